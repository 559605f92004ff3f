//! `nss configure-mcas` for an Entra application: by flags for cloud-init, and on a
//! terminal with the client secret hidden.

use std::fs;

use crate::configure::{mode, nss_piped, Terminal, DOMAIN_PROMPT, TOKEN_PROMPT};
use crate::support::harness::*;

const TENANT_PROMPT: &str = "tenant_id (Directory (tenant) ID or domain of the Entra application) ";
const CLIENT_ID_PROMPT: &str = "client_id (Application (client) ID of the Entra application) ";
const CLIENT_SECRET_PROMPT: &str = "client_secret (Client secret of the Entra application) ";
/// An Entra application's client secret, as the portal shows it once.
const CLIENT_SECRET: &str = "cS3~Q8Q~entra-client-secret-value-XYZW";
const TENANT: &str = "contoso.onmicrosoft.com";
const CLIENT_ID: &str = "00001111-aaaa-2222-bbbb-3333cccc4444";

/// `nss configure-mcas --auth entra ...` for cloud-init: the application's keys written,
/// exactly one of its secret keys kept, nothing printed of the secret.
#[test]
fn configure_entra_from_flags_writes_the_application() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    fs::write(
        &config,
        "# by hand\n[mcas]\n# the portal\ndomain = \"old.example.com\"\n\n[batch]\nmax_age = \"30s\" # keep\n",
    )
    .unwrap();
    let entra = |extra: &[&str], stdin: &str| {
        let mut args = vec![
            "configure-mcas",
            "--auth",
            "entra",
            "--tenant-id",
            TENANT,
            "--client-id",
            CLIENT_ID,
            "--domain",
            "tenant.us3.portal.cloudappsecurity.com",
            "--no-verify",
        ];
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = nss_piped(&config, &args, stdin);
        assert!(
            !stdout.contains(CLIENT_SECRET) && !stderr.contains(CLIENT_SECRET),
            "the client secret was printed:\n{stdout}{stderr}"
        );
        (code, stdout, stderr)
    };

    let (code, stdout, stderr) = entra(&["--client-secret-stdin"], &format!("{CLIENT_SECRET}\n"));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(CLIENT_ID) && stdout.contains("****XYZW"),
        "{stdout}"
    );
    let text = fs::read_to_string(&config).unwrap();
    for line in [
        "# by hand\n[mcas]\n# the portal\ndomain = \"tenant.us3.portal.cloudappsecurity.com\"\n",
        "auth = \"entra\"",
        &format!("tenant_id = \"{TENANT}\""),
        &format!("client_id = \"{CLIENT_ID}\""),
        &format!("client_secret = \"{CLIENT_SECRET}\""),
        "max_age = \"30s\" # keep",
    ] {
        assert!(text.contains(line), "{line:?} missing in:\n{text}");
    }
    assert!(!text.contains("token"), "{text}");
    assert_eq!(mode(&config), 0o600);
    let (code, dump, stderr) = nss_piped(&config, &["dump-config"], "");
    assert_eq!(code, 0, "{stderr}");
    assert!(dump.contains("auth = \"entra\""), "{dump}");
    assert!(
        dump.contains("client_secret = \"****XYZW\"") && !dump.contains(CLIENT_SECRET),
        "{dump}"
    );

    // A certificate instead: the secret goes, the certificate's path is kept.
    let certificate = dir.path().join("app.pem");
    fs::write(
        &certificate,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let (code, stdout, stderr) = entra(&["--certificate-file", certificate.to_str().unwrap()], "");
    assert_eq!(code, 0, "{stdout}{stderr}");
    let text = fs::read_to_string(&config).unwrap();
    assert!(!text.contains("client_secret"), "{text}");
    assert!(
        text.contains(&format!("certificate_file = \"{}\"", certificate.display())),
        "{text}"
    );
    let (code, _, stderr) = nss_piped(&config, &["dump-config"], "");
    assert_eq!(code, 0, "{stderr}");

    // From a file (cloud-init writes one): the certificate goes, the secret is stored.
    let secret_file = dir.path().join("client-secret");
    fs::write(&secret_file, format!("{CLIENT_SECRET}\n")).unwrap();
    let (code, stdout, stderr) =
        entra(&["--client-secret-file", secret_file.to_str().unwrap()], "");
    assert_eq!(code, 0, "{stdout}{stderr}");
    let text = fs::read_to_string(&config).unwrap();
    assert!(!text.contains("certificate_file"), "{text}");
    assert!(
        text.contains(&format!("client_secret = \"{CLIENT_SECRET}\"")),
        "{text}"
    );

    // Refused input names the key and leaves the file as it was.
    let (code, stdout, stderr) = nss_piped(
        &dir.path().join("fresh.toml"),
        &[
            "configure-mcas",
            "--auth",
            "entra",
            "--tenant-id",
            TENANT,
            "--client-secret-stdin",
            "--domain",
            "tenant.us3.portal.cloudappsecurity.com",
        ],
        // Not read: the missing client id is refused first.
        "",
    );
    assert_eq!(code, 78, "{stdout}{stderr}");
    assert!(stderr.contains("mcas.client_id"), "{stderr}");
    assert!(!dir.path().join("fresh.toml").exists());
    let (code, stdout, stderr) = entra(&["--certificate-file", "/nonexistent/app.pem"], "");
    assert_eq!(code, 78, "{stdout}{stderr}");
    assert!(stderr.contains("mcas.certificate_file"), "{stderr}");
    let (code, stdout, stderr) = nss_piped(
        &config,
        &[
            "configure-mcas",
            "--tenant-id",
            "contoso/../evil",
            "--no-verify",
        ],
        "",
    );
    assert_eq!(code, 78, "{stdout}{stderr}");
    assert!(stderr.contains("mcas.tenant_id"), "{stderr}");
    assert_eq!(fs::read_to_string(&config).unwrap(), text);

    // Back to a token: auth says so, the application's keys stay for a later switch.
    let (code, stdout, stderr) = nss_piped(
        &config,
        &["configure-mcas", "--token-stdin", "--no-verify"],
        TOKEN,
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let text = fs::read_to_string(&config).unwrap();
    assert!(text.contains("auth = \"token\""), "{text}");
    assert!(text.contains(&format!("token = \"{TOKEN}\"")), "{text}");

    // disable-mcas forgets every credential and the domain.
    let (code, stdout, stderr) = nss_piped(&config, &["disable-mcas"], "");
    assert_eq!(code, 0, "{stdout}{stderr}");
    let text = fs::read_to_string(&config).unwrap();
    for key in [
        "auth",
        "token",
        "tenant_id",
        "client_id",
        "client_secret",
        "domain",
    ] {
        assert!(!text.contains(&format!("{key} =")), "{key} kept:\n{text}");
    }
    assert!(text.contains("max_age = \"30s\" # keep"), "{text}");
}

/// On a terminal: `--auth entra` asks the application's three values (the secret not
/// echoed) and the domain; no secret is ever asked at a prompt that echoes.
#[test]
fn configure_entra_on_a_terminal_hides_the_client_secret() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let mut terminal = Terminal::spawn(
        &config,
        &["configure-mcas", "--auth", "entra", "--no-verify"],
    );
    let before = terminal.expect(&format!("{TENANT_PROMPT}[]: "));
    assert_eq!(before, "", "{before}");
    terminal.type_line(TENANT);
    terminal.expect(&format!("{CLIENT_ID_PROMPT}[]: "));
    terminal.type_line("not an id");
    let complaint = terminal.expect(&format!("{CLIENT_ID_PROMPT}[]: "));
    assert!(complaint.contains("not an Entra id"), "{complaint}");
    terminal.type_line(CLIENT_ID);
    terminal.expect(&format!("{CLIENT_SECRET_PROMPT}[]: "));
    terminal.wait_echo_off();
    terminal.type_line(CLIENT_SECRET);
    terminal.expect(&format!("{DOMAIN_PROMPT}[]: "));
    terminal.type_line("tenant.us3.portal.cloudappsecurity.com");
    terminal.expect("Run `sudo nss restart` to apply.");
    let (code, shown) = terminal.wait();
    assert_eq!(code, 0, "{shown}");
    assert!(
        !shown.contains(CLIENT_SECRET),
        "the secret was echoed:\n{shown}"
    );
    let text = fs::read_to_string(&config).unwrap();
    assert!(
        text.contains(&format!("client_secret = \"{CLIENT_SECRET}\"")),
        "{text}"
    );
    assert!(text.contains("auth = \"entra\""), "{text}");

    // The guide's steps on a file that holds an application: Enter at the (hidden) token
    // prompt keeps the application.
    let mut terminal = Terminal::spawn(&config, &["configure-mcas", "--no-verify"]);
    terminal.expect(&format!("{TOKEN_PROMPT}[]: "));
    terminal.wait_echo_off();
    terminal.type_line("");
    let kept = terminal.expect(&format!(
        "{DOMAIN_PROMPT}[tenant.us3.portal.cloudappsecurity.com]: "
    ));
    assert!(
        kept.contains(&format!("Keeping the Entra application {CLIENT_ID}")),
        "{kept}"
    );
    terminal.type_line("");
    terminal.expect("Run `sudo nss restart` to apply.");
    let (code, shown) = terminal.wait();
    assert_eq!(code, 0, "{shown}");
    assert_eq!(fs::read_to_string(&config).unwrap(), text);

    // Again: the current values in brackets, the secret masked; Enter keeps them all.
    let mut terminal = Terminal::spawn(
        &config,
        &["configure-mcas", "--auth", "entra", "--no-verify"],
    );
    terminal.expect(&format!("{TENANT_PROMPT}[{TENANT}]: "));
    terminal.type_line("");
    terminal.expect(&format!("{CLIENT_ID_PROMPT}[{CLIENT_ID}]: "));
    terminal.type_line("");
    terminal.expect(&format!("{CLIENT_SECRET_PROMPT}[****XYZW]: "));
    terminal.type_line("");
    terminal.expect(&format!(
        "{DOMAIN_PROMPT}[tenant.us3.portal.cloudappsecurity.com]: "
    ));
    terminal.type_line("");
    terminal.expect("Run `sudo nss restart` to apply.");
    let (code, shown) = terminal.wait();
    assert_eq!(code, 0, "{shown}");
    assert_eq!(fs::read_to_string(&config).unwrap(), text);
}
