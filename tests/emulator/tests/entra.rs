//! The Entra token endpoint as an MCAS client meets it: client secrets, certificate
//! assertions, the AADSTS refusals, and the access tokens on the MCAS API (lifetime,
//! permissions).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use mcas_emulator::entra::{MCAS_SCOPE, OTHER_TEST_CERTIFICATE_PEM, TEST_CERTIFICATE_PEM};
use mcas_emulator::{EntraApp, Roles};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};

mod common;

use common::*;

const CLIENT: &str = "3b0c7d8e-1f2a-4b5c-8d9e-0a1b2c3d4e5f";
const SECRET: &str = "Zq8~secret.value_0123456789";
const CERT_CLIENT: &str = "9e8d7c6b-5a4f-4e3d-2c1b-0a9f8e7d6c5b";

async fn start_entra() -> Harness {
    start_with(|c| {
        c.entra.apps = vec![
            EntraApp::with_secret(CLIENT, SECRET),
            EntraApp::with_certificate(CERT_CLIENT, TEST_CERTIFICATE_PEM),
        ];
        c.entra.token_lifetime = Duration::from_secs(2);
    })
    .await
}

impl Harness {
    /// POSTs a token request form to the tenant `tenant`.
    async fn token_request(&self, tenant: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let resp = self
            .http
            .post(format!(
                "{}/{tenant}/oauth2/v2.0/token",
                self.emu.base_url()
            ))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    async fn secret_token(&self, client_id: &str, secret: &str) -> (u16, Value) {
        let tenant = self.emu.tenant_id();
        self.token_request(
            &tenant,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret),
                ("scope", MCAS_SCOPE),
            ],
        )
        .await
    }

    async fn assertion_token(&self, client_id: &str, assertion: &str) -> (u16, Value) {
        let tenant = self.emu.tenant_id();
        self.token_request(
            &tenant,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion),
                ("scope", MCAS_SCOPE),
            ],
        )
        .await
    }

    async fn get_with_bearer(&self, path: &str, token: &str) -> u16 {
        self.http
            .get(self.api(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

const UPLOAD_URL: &str = "/api/v1/discovery/upload_url/?filename=a.gz&source=ZSCALER_QRADAR";
const STREAMS: &str = "/api/discovery/streams/";

/// The AADSTS code of a refusal, checking the document's shape on the way.
fn aadsts(body: &Value) -> u64 {
    let code = body["error_codes"][0].as_u64().expect("error_codes");
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.starts_with(&format!("AADSTS{code}: ")),
        "{description}"
    );
    assert!(body["error"].is_string() && body["trace_id"].is_string());
    code
}

fn certificate_der(pem: &str) -> Vec<u8> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

/// A JWT signed with the private key in `pem`: RS256, or PS256 if `pss`.
fn sign(pem: &str, header: &Value, claims: &Value, pss: bool) -> String {
    let key = PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap();
    let key = ring::signature::RsaKeyPair::from_pkcs8(key.secret_der()).unwrap();
    let signed = format!(
        "{}.{}",
        B64URL.encode(header.to_string()),
        B64URL.encode(claims.to_string())
    );
    let mut sig = vec![0; key.public().modulus_len()];
    let alg: &dyn ring::signature::RsaEncoding = if pss {
        &ring::signature::RSA_PSS_SHA256
    } else {
        &ring::signature::RSA_PKCS1_SHA256
    };
    key.sign(
        alg,
        &ring::rand::SystemRandom::new(),
        signed.as_bytes(),
        &mut sig,
    )
    .unwrap();
    format!("{signed}.{}", B64URL.encode(sig))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// What a correct client sends: header naming `cert_pem`'s SHA-256 thumbprint, claims for
/// `CERT_CLIENT` at `token_url`.
fn assertion_parts(cert_pem: &str, token_url: &str) -> (Value, Value) {
    let thumb = B64URL.encode(ring::digest::digest(
        &ring::digest::SHA256,
        &certificate_der(cert_pem),
    ));
    let now = now_secs();
    (
        json!({"alg": "RS256", "typ": "JWT", "x5t#S256": thumb}),
        json!({"aud": token_url, "iss": CERT_CLIENT, "sub": CERT_CLIENT,
               "jti": "d0c2a5e4-1", "nbf": now, "exp": now + 600}),
    )
}

#[tokio::test]
async fn client_secret_token_works_until_it_expires() {
    let h = start_entra().await;
    let (status, body) = h.secret_token(CLIENT, SECRET).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 2);
    let token = body["access_token"].as_str().unwrap().to_string();
    assert!(token.starts_with("eyJ") && token.split('.').count() == 3);

    assert_eq!(h.get_with_bearer(UPLOAD_URL, &token).await, 200);
    assert_eq!(h.get_with_bearer(STREAMS, &token).await, 200);
    // Only with the Bearer scheme, and only a token it issued.
    let as_legacy = h
        .http
        .get(h.api(UPLOAD_URL))
        .header("Authorization", format!("Token {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(as_legacy.status(), 401);
    assert_eq!(h.get_with_bearer(UPLOAD_URL, "eyJforged.x.y").await, 401);

    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(h.get_with_bearer(UPLOAD_URL, &token).await, 401);

    // The token endpoint is not an MCAS API call: neither counted nor throttled.
    h.emu.set_throttle(Some(1));
    for _ in 0..3 {
        assert_eq!(h.secret_token(CLIENT, SECRET).await.0, 200);
    }
    assert_eq!(h.emu.stats().api_calls, 5);
    assert_eq!(h.emu.calls_to(mcas_emulator::Endpoint::Token).len(), 4);
}

#[tokio::test]
async fn secret_refusals_carry_their_aadsts_codes() {
    let h = start_entra().await;
    let (status, body) = h.secret_token(CLIENT, "wrong").await;
    assert_eq!((status, aadsts(&body)), (401, 7000215));
    assert_eq!(body["error"], "invalid_client");

    let (status, body) = h
        .secret_token("00000000-0000-0000-0000-000000000000", SECRET)
        .await;
    assert_eq!((status, aadsts(&body)), (400, 700016));

    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT),
        ("client_secret", SECRET),
        ("scope", MCAS_SCOPE),
    ];
    let (status, body) = h.token_request("nosuchtenant.onmicrosoft.com", &form).await;
    assert_eq!((status, aadsts(&body)), (400, 90002));
    // The tenant's domain works as well as its id.
    let (status, _) = h.token_request("Contoso.onmicrosoft.com", &form).await;
    assert_eq!(status, 200);

    let mut other_scope = form;
    other_scope[3] = ("scope", "https://graph.microsoft.com/.default");
    let (status, body) = h.token_request(&h.emu.tenant_id(), &other_scope).await;
    assert_eq!((status, aadsts(&body)), (400, 500011));

    // A JSON body is no form: as if nothing were sent.
    let resp = h
        .http
        .post(h.emu.token_url())
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(aadsts(&resp.json().await.unwrap()), 900144);

    h.emu.expire_secret(CLIENT).unwrap();
    let (status, body) = h.secret_token(CLIENT, SECRET).await;
    assert_eq!((status, aadsts(&body)), (401, 7000222));
    // A wrong secret is still reported as wrong, not as expired.
    assert_eq!(aadsts(&h.secret_token(CLIENT, "wrong").await.1), 7000215);

    h.emu
        .register_app(EntraApp {
            consented: false,
            ..EntraApp::with_secret(CLIENT, SECRET)
        })
        .unwrap();
    let (status, body) = h.secret_token(CLIENT, SECRET).await;
    assert_eq!((status, aadsts(&body)), (400, 65001));
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn certificate_assertions() {
    let h = start_entra().await;
    let url = h.emu.token_url();
    let (header, claims) = assertion_parts(TEST_CERTIFICATE_PEM, &url);

    let (status, body) = h
        .assertion_token(
            CERT_CLIENT,
            &sign(TEST_CERTIFICATE_PEM, &header, &claims, false),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(h.get_with_bearer(UPLOAD_URL, token).await, 200);

    // PS256 with the SHA-1 thumbprint (x5t) is fine too.
    let sha1 = B64URL.encode(ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        &certificate_der(TEST_CERTIFICATE_PEM),
    ));
    let ps_header = json!({"alg": "PS256", "typ": "JWT", "x5t": sha1});
    let (status, body) = h
        .assertion_token(
            CERT_CLIENT,
            &sign(TEST_CERTIFICATE_PEM, &ps_header, &claims, true),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Signed by another key, naming the registered certificate: bad signature.
    let forged = sign(OTHER_TEST_CERTIFICATE_PEM, &header, &claims, false);
    let (status, body) = h.assertion_token(CERT_CLIENT, &forged).await;
    assert_eq!((status, aadsts(&body)), (401, 700027));
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("did not match"));
    // Naming a certificate the application does not have: key not found.
    let (other_header, _) = assertion_parts(OTHER_TEST_CERTIFICATE_PEM, &url);
    let other = sign(OTHER_TEST_CERTIFICATE_PEM, &other_header, &claims, false);
    let (status, body) = h.assertion_token(CERT_CLIENT, &other).await;
    assert_eq!((status, aadsts(&body)), (401, 700027));
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("The key was not found"));
    // A tampered payload breaks the signature.
    let good = sign(TEST_CERTIFICATE_PEM, &header, &claims, false);
    let parts: Vec<&str> = good.split('.').collect();
    let mut wider = claims.clone();
    wider["exp"] = json!(now_secs() + 86_400 * 365);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        B64URL.encode(wider.to_string()),
        parts[2]
    );
    assert_eq!(
        aadsts(&h.assertion_token(CERT_CLIENT, &tampered).await.1),
        700027
    );

    // Claims, each wrong in turn.
    let cases: [(&str, Value, u64); 5] = [
        (
            "aud",
            json!(format!("{}/other/oauth2/v2.0/token", h.emu.base_url())),
            700023,
        ),
        ("iss", json!("someone-else"), 700021),
        ("exp", json!(now_secs() - 10), 700024),
        ("nbf", json!(now_secs() + 3600), 700024),
        ("jti", Value::Null, 50027),
    ];
    for (claim, value, code) in cases {
        let mut bad = claims.clone();
        bad[claim] = value;
        let (status, body) = h
            .assertion_token(
                CERT_CLIENT,
                &sign(TEST_CERTIFICATE_PEM, &header, &bad, false),
            )
            .await;
        assert_eq!((status / 100, aadsts(&body)), (4, code), "{claim}: {body}");
    }
    // The application with a certificate has no secret.
    assert_eq!(aadsts(&h.secret_token(CERT_CLIENT, "").await.1), 7000216);
    assert_eq!(aadsts(&h.secret_token(CERT_CLIENT, "x").await.1), 7000215);
}

#[tokio::test]
async fn permissions_of_apps_and_of_the_legacy_token() {
    let h = start_entra().await;
    let token = h.secret_token(CLIENT, SECRET).await.1["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    h.emu
        .set_app_roles(
            CLIENT,
            Roles {
                discovery_manage: false,
                discovery_read: true,
            },
        )
        .unwrap();
    assert_eq!(h.get_with_bearer(UPLOAD_URL, &token).await, 403);
    assert_eq!(
        h.get_with_bearer(
            "/api/discovery_block_scripts/?format=120&type=banned",
            &token
        )
        .await,
        403
    );
    assert_eq!(h.get_with_bearer(STREAMS, &token).await, 200);
    h.emu
        .set_app_roles(
            CLIENT,
            Roles {
                discovery_manage: true,
                discovery_read: false,
            },
        )
        .unwrap();
    assert_eq!(h.get_with_bearer(UPLOAD_URL, &token).await, 200);
    assert_eq!(h.get_with_bearer(STREAMS, &token).await, 403);
    // A removed application's tokens stop working.
    h.emu.remove_app(CLIENT).unwrap();
    assert_eq!(h.get_with_bearer(UPLOAD_URL, &token).await, 401);

    let legacy = h.authed_get(h.api(STREAMS)).send().await.unwrap();
    assert_eq!(legacy.status(), 200);
    h.emu.set_token_roles(Roles {
        discovery_manage: true,
        discovery_read: false,
    });
    let legacy = h.authed_get(h.api(STREAMS)).send().await.unwrap();
    assert_eq!(legacy.status(), 403);
    let v: Value = legacy.json().await.unwrap();
    assert_eq!(
        v["detail"],
        "You do not have permission to perform this action."
    );
}

#[tokio::test]
async fn control_api_for_the_directory() {
    let h = start().await;
    let control = |path: &str| format!("{}/_emulator/entra{path}", h.emu.base_url());
    let resp = h
        .http
        .post(control("/apps"))
        .json(&json!({"client_id": CERT_CLIENT, "certificate_pem": TEST_CERTIFICATE_PEM,
                      "secret": SECRET, "roles": {"discovery_manage": true, "discovery_read": false}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let resp = h
        .http
        .post(control("/apps"))
        .json(&json!({"client_id": "x", "certificate_pem": "not a certificate"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    let post = |path: &str, body: Value| {
        let req = h.http.post(control(path)).json(&body);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(post("/token_lifetime", json!({"secs": 7})).await, 200);
    let (status, body) = h.secret_token(CERT_CLIENT, SECRET).await;
    assert_eq!((status, body["expires_in"].as_u64()), (200, Some(7)));
    let token = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(h.get_with_bearer(STREAMS, &token).await, 403);

    assert_eq!(
        post(&format!("/apps/{CERT_CLIENT}/expire_secret"), json!({})).await,
        200
    );
    assert_eq!(
        aadsts(&h.secret_token(CERT_CLIENT, SECRET).await.1),
        7000222
    );
    assert_eq!(
        post(&format!("/apps/{CERT_CLIENT}/revoke_consent"), json!({})).await,
        200
    );
    let url = h.emu.token_url();
    let (header, claims) = assertion_parts(TEST_CERTIFICATE_PEM, &url);
    let assertion = sign(TEST_CERTIFICATE_PEM, &header, &claims, false);
    assert_eq!(
        aadsts(&h.assertion_token(CERT_CLIENT, &assertion).await.1),
        65001
    );
    assert_eq!(post("/apps/nobody/revoke_consent", json!({})).await, 400);

    let listing: Value = h
        .http
        .get(control(""))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listing["tenant_id"], h.emu.tenant_id());
    assert_eq!(listing["apps"][0]["consented"], false);
    assert_eq!(listing["apps"][0]["has_certificate"], true);
    assert!(!listing.to_string().contains(SECRET));

    let resp = h
        .http
        .delete(control(&format!("/apps/{CERT_CLIENT}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(h.get_with_bearer(UPLOAD_URL, &token).await, 401);
}
