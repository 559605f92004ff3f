//! The uploader against a scripted MCAS, on paused time: merges, holds, an unanswered
//! done_upload, refusals and outages, each decided in virtual seconds.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::counters::UploaderCounters;
use super::{Mcas, PauseKind, Uploader};
use crate::config::UploadSettings;
use crate::mcas::{ApiError, ApiRateLimiter, Provider, Step, UploadTarget};
use crate::spool::{BatchFile, SealedBatch, Spool};

/// How the scripted MCAS answers a call.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// With this status and body.
    Status(u16, &'static str),
    /// No answer in time, though MCAS acts on the call.
    TakenUnanswered,
}

#[derive(Default)]
struct Script {
    upload_url: VecDeque<Answer>,
    done_upload: VecDeque<Answer>,
    /// Every PUT of a file whose name holds this fails with 500.
    failing_file: Option<String>,
    /// upload_url answers 503 until then.
    down_until: Option<Instant>,
    /// upload_url answers http:// URLs.
    insecure_urls: bool,
    /// API calls, by step, with their time.
    calls: Vec<(Step, Instant)>,
    /// API calls of other tasks (the data sources list, the block script), with their time.
    other_calls: Vec<Instant>,
    issued: u64,
    /// The records PUT at each URL, and the URLs MCAS ingested, in order.
    blobs: HashMap<String, u64>,
    ingested: Vec<String>,
}

/// A scripted MCAS, and the process's rate limiter, which counts every call (at a rate
/// that never makes one wait).
#[derive(Clone)]
struct Fake(Arc<Mutex<Script>>, Arc<ApiRateLimiter>);

impl Default for Fake {
    fn default() -> Fake {
        Fake::with_rate(100_000)
    }
}

impl Fake {
    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.0.lock().unwrap()
    }

    /// A scripted MCAS whose API calls go through a rate limiter of `per_minute` calls.
    fn with_rate(per_minute: u32) -> Fake {
        Fake(Arc::default(), Arc::new(ApiRateLimiter::new(per_minute)))
    }

    /// Another task of the process makes an API call now.
    async fn other_call(&self) {
        self.1.acquire().await;
        self.script().other_calls.push(Instant::now());
    }

    fn calls(&self, step: Step) -> usize {
        self.script()
            .calls
            .iter()
            .filter(|(s, _)| *s == step)
            .count()
    }

    /// Records MCAS took, each URL once however often it was ingested.
    fn records(&self) -> u64 {
        let script = self.script();
        script.ingested.iter().map(|url| script.blobs[url]).sum()
    }

    fn answer(step: Step, answer: Answer) -> Result<(), ApiError> {
        match answer {
            Answer::Status(code, _) if (200..300).contains(&code) => Ok(()),
            Answer::Status(code, body) => Err(ApiError::from_api_status(
                step,
                code,
                None,
                "mcas",
                body.as_bytes(),
            )),
            Answer::TakenUnanswered => Err(ApiError::Transient {
                step,
                reason: "timed out".into(),
                retry_after: None,
                throttled: false,
            }),
        }
    }
}

impl Mcas for Fake {
    async fn upload_url(&self, file_name: &str) -> Result<UploadTarget, ApiError> {
        self.1.acquire().await;
        let mut script = self.script();
        let now = Instant::now();
        script.calls.push((Step::UploadUrl, now));
        if script.down_until.is_some_and(|until| now < until) {
            return Err(Fake::answer(Step::UploadUrl, Answer::Status(503, "down")).unwrap_err());
        }
        if let Some(answer) = script.upload_url.pop_front() {
            Fake::answer(Step::UploadUrl, answer)?;
        }
        script.issued += 1;
        let scheme = if script.insecure_urls {
            "http"
        } else {
            "https"
        };
        let url = format!("{scheme}://blob/{}-{file_name}", script.issued);
        if script.insecure_urls {
            return Err(ApiError::UnusableUploadUrl {
                reason: format!("its scheme is {scheme}, not https"),
            });
        }
        Ok(UploadTarget {
            url,
            provider: Provider::Aws,
        })
    }

    async fn put_blob(&self, target: &UploadTarget, batch: &SealedBatch) -> Result<(), ApiError> {
        let mut script = self.script();
        if script
            .failing_file
            .as_ref()
            .is_some_and(|name| target.url.contains(name.as_str()))
        {
            return Err(ApiError::from_blob_status(500, None, b"emulated"));
        }
        script.blobs.insert(target.url.clone(), batch.records);
        Ok(())
    }

    // Its upload URLs are AWS's, which take no blocks (the uploader never stages to one).
    async fn stage_block(
        &self,
        _target: &UploadTarget,
        _index: usize,
        _piece: bytes::Bytes,
    ) -> Result<(), ApiError> {
        Err(ApiError::from_blob_status(400, None, b"not an Azure blob"))
    }

    async fn commit_blocks(&self, _target: &UploadTarget, _count: usize) -> Result<(), ApiError> {
        Err(ApiError::from_blob_status(400, None, b"not an Azure blob"))
    }

    async fn done_upload(&self, target: &UploadTarget) -> Result<(), ApiError> {
        self.1.acquire().await;
        let mut script = self.script();
        script.calls.push((Step::DoneUpload, Instant::now()));
        let answer = script
            .done_upload
            .pop_front()
            .unwrap_or(Answer::Status(200, ""));
        let taken = matches!(answer, Answer::TakenUnanswered)
            || matches!(answer, Answer::Status(200..=299, _));
        if taken && !script.ingested.contains(&target.url) {
            script.ingested.push(target.url.clone());
        }
        Fake::answer(Step::DoneUpload, answer)
    }

    fn wait_for_calls(&self, calls: u32) -> Duration {
        self.1.wait_for(calls)
    }

    async fn call_available(&self) {
        self.1.ready().await
    }

    fn most_back_to_back(&self) -> u32 {
        self.1.most_back_to_back()
    }

    fn wait_for_share(&self, share: u32) -> Duration {
        self.1.wait_for_share(share)
    }
}

/// A spool in a temporary directory, an uploader of it through `fake`, running.
struct Running {
    _dir: tempfile::TempDir,
    spool: Arc<Spool>,
    counters: UploaderCounters,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn settings() -> UploadSettings {
    UploadSettings {
        backoff_min: Duration::from_secs(1),
        backoff_max: Duration::from_secs(300),
        outage_retry: Duration::from_secs(15),
        auth_retry: Duration::from_secs(300),
        ..UploadSettings::default()
    }
}

impl Running {
    fn start(fake: &Fake) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::prepare(dir.path()).unwrap());
        Running::start_on(fake, dir, spool)
    }

    fn start_on(fake: &Fake, dir: tempfile::TempDir, spool: Arc<Spool>) -> Running {
        let counters = UploaderCounters::default();
        let uploader = Uploader::with_mcas(
            fake.clone(),
            spool.clone(),
            counters.clone(),
            settings(),
            "test".into(),
        );
        let cancel = CancellationToken::new();
        let task = tokio::spawn(uploader.run(cancel.clone(), CancellationToken::new()));
        Running {
            _dir: dir,
            spool,
            counters,
            cancel,
            task,
        }
    }

    /// Seals a batch of `records` records.
    fn seal(&self, records: usize) -> SealedBatch {
        let mut file = BatchFile::create(
            &self.spool.new_batch_path(0, crate::handoff::Origin::Stream),
            1,
        )
        .unwrap();
        for n in 0..records {
            file.append(format!("record {n}").as_bytes()).unwrap();
        }
        let written = file.finish().unwrap();
        self.spool.seal_written(&written, &[]).unwrap().batch
    }

    fn waiting(&self) -> usize {
        self.spool.scan_ready().unwrap().len()
    }

    async fn stop(self) {
        self.cancel.cancel();
        self.task.await.unwrap();
    }
}

/// Waits (in virtual time) until `check` holds.
async fn until(what: &str, check: impl Fn() -> bool) {
    for _ in 0..200_000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never: {what}");
}

/// Three batches sealed before the uploader first looks, through a rate limiter of
/// `per_minute` calls of which other tasks just spent `spent`: how many uploads carried
/// them (all 30 records checked).
async fn uploads_of_three_sealed(per_minute: u32, spent: u32) -> usize {
    let fake = Fake::with_rate(per_minute);
    for _ in 0..spent {
        fake.other_call().await;
    }
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::prepare(dir.path()).unwrap());
    let running = Running::start_on(&fake, dir, spool);
    for _ in 0..3 {
        running.seal(10);
    }
    until("every batch delivered", || running.waiting() == 0).await;
    assert_eq!(fake.records(), 30);
    running.stop().await;
    fake.calls(Step::UploadUrl)
}

#[tokio::test(start_paused = true)]
async fn while_calls_are_plentiful_each_batch_goes_up_as_sealed() {
    assert_eq!(
        uploads_of_three_sealed(100_000, 0).await,
        3,
        "one each, no merge"
    );
}

#[tokio::test(start_paused = true)]
async fn while_calls_are_scarce_waiting_batches_go_up_as_one() {
    // The burst spent: one call every 2 s.
    assert_eq!(uploads_of_three_sealed(30, 4).await, 1, "one merged upload");
}

#[tokio::test(start_paused = true)]
async fn batches_ready_beyond_the_calls_available_now_go_up_as_one_at_once() {
    // One upload's two calls may go now, then one every 2 s: the second batch alone would
    // wait 4 s for the limiter, one merged upload of all three waits for nothing.
    assert_eq!(uploads_of_three_sealed(30, 2).await, 1, "one merged upload");
}

#[tokio::test(start_paused = true)]
async fn batches_ready_beyond_the_calls_now_go_up_one_by_one_when_the_wait_is_short() {
    // A fast rate: the calls beyond the burst come every 100 ms, and the second batch
    // alone waits 0.2 s: not worth a merge.
    assert_eq!(
        uploads_of_three_sealed(610, 2).await,
        3,
        "one each, no merge"
    );
}

#[tokio::test(start_paused = true)]
async fn while_batches_fill_one_uploads_calls_are_kept_for_the_last_of_them() {
    // 30 calls a minute: 4 back to back, then one every 2 s.
    let fake = Fake::with_rate(30);
    let running = Running::start(&fake);
    let filling = running.spool.start_filling();
    running.seal(10);
    until("the first batch delivered", || running.waiting() == 0).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Sealed while a writer fills the next: it waits, keeping the calls it would spend.
    running.seal(10);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The last batch of the burst; its writer lets go of it a moment after the seal (a
    // tailed file's checkpoint is saved in between): nothing is being filled any more.
    running.seal(10);
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(filling);
    let filled = Instant::now();
    until("every batch delivered", || running.waiting() == 0).await;
    let done = fake
        .script()
        .calls
        .iter()
        .filter(|(step, _)| *step == Step::DoneUpload)
        .map(|&(_, at)| at)
        .max()
        .unwrap();
    assert!(
        done - filled < Duration::from_millis(500),
        "the last batch was taken {:?} after its writer let go of it",
        done - filled
    );
    assert_eq!(fake.records(), 30);
    assert_eq!(
        fake.calls(Step::UploadUrl),
        2,
        "the last two went up as one"
    );
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_spools_figures_say_which_seals_the_last_scan_saw() {
    let fake = Fake::default();
    let running = Running::start(&fake);
    let spool = &running.counters.spool;
    assert_eq!(spool.scanned_sealed_records.get(), None, "no scan yet");
    until("the first scan", || {
        spool.scanned_sealed_records.get() == Some(0)
    })
    .await;
    // As the batch writer does: the count goes up once the batch is in the spool.
    running.seal(5);
    spool.sealed_records.add(5);
    until("a scan after the seal finds nothing waiting", || {
        spool.scanned_sealed_records.get() == Some(5) && spool.batches.get() == 0
    })
    .await;
    assert_eq!(
        fake.records(),
        5,
        "the batch went up before the spool read empty"
    );
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_held_batch_is_tried_again_once_a_newer_one_is_delivered() {
    let fake = Fake::default();
    fake.script().failing_file = Some("-0.log.gz".into());
    let running = Running::start(&fake);
    running.seal(5);
    until("batch 0 held", || running.counters.spool.held.get() == 1).await;
    assert!(
        fake.calls(Step::UploadUrl) >= 2,
        "repeated PUT failures ask for a new upload URL"
    );
    fake.script().failing_file = None;
    running.seal(7);
    let newer = Instant::now();
    until("both delivered", || running.waiting() == 0).await;
    assert!(
        Instant::now() - newer < Duration::from_secs(30),
        "not the whole hold: {:?}",
        Instant::now() - newer
    );
    assert_eq!(fake.records(), 12);
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_refused_repeat_of_an_unanswered_done_upload_delivers_once() {
    let fake = Fake::default();
    fake.script().done_upload = VecDeque::from([
        Answer::TakenUnanswered,
        // MCAS echoes the request: its words say nothing of the configuration.
        Answer::Status(
            400,
            r#"{"detail": "This upload was already processed", "inputStreamName": "NSS"}"#,
        ),
    ]);
    let running = Running::start(&fake);
    running.seal(50);
    until("delivered", || running.waiting() == 0).await;
    assert_eq!(fake.calls(Step::UploadUrl), 1);
    assert_eq!(fake.calls(Step::DoneUpload), 2);
    assert_eq!(fake.script().ingested.len(), 1);
    assert_eq!(fake.records(), 50);
    assert!(running.counters.upload.pause_reason().is_none());
    assert!(running.counters.upload.last_error().is_none());
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_done_upload_left_unanswered_by_an_earlier_run_is_repeated_not_resent() {
    let fake = Fake::default();
    fake.script().done_upload = VecDeque::from([Answer::TakenUnanswered; 3]);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let spool = Arc::new(Spool::prepare(&root).unwrap());
    let running = Running::start_on(&fake, dir, spool);
    running.seal(20);
    until("the done_upload sent", || fake.calls(Step::DoneUpload) == 1).await;
    // The run ends before MCAS's answer; the next one starts on the same spool.
    running.task.abort();
    let dir = running._dir;
    fake.script().done_upload =
        VecDeque::from([Answer::Status(400, r#"{"detail": "already processed"}"#)]);
    let spool = Arc::new(Spool::prepare(&root).unwrap());
    let again = Running::start_on(&fake, dir, spool);
    until("delivered", || again.waiting() == 0).await;
    assert_eq!(fake.calls(Step::UploadUrl), 1, "not uploaded anew");
    assert_eq!(fake.script().ingested.len(), 1);
    assert_eq!(fake.records(), 20);
    again.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_tenant_wide_refusal_pauses_uploads_until_auth_retry() {
    let fake = Fake::default();
    fake.script().upload_url = VecDeque::from([Answer::Status(400, "unknown source")]);
    let running = Running::start(&fake);
    running.seal(5);
    until("paused", || {
        running.counters.upload.pause_reason().is_some()
    })
    .await;
    let paused = Instant::now();
    until("delivered", || running.waiting() == 0).await;
    assert!(Instant::now() - paused >= settings().auth_retry - Duration::from_secs(1));
    assert_eq!(fake.calls(Step::UploadUrl), 2);
    assert_eq!(fake.records(), 5);
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn unusable_upload_urls_pause_uploads() {
    let fake = Fake::default();
    fake.script().insecure_urls = true;
    let running = Running::start(&fake);
    running.seal(5);
    until("paused", || {
        running.counters.upload.pause_reason().is_some()
    })
    .await;
    let why = running.counters.upload.pause_reason().unwrap();
    assert_eq!(why.kind, PauseKind::UnusableUploadUrls);
    assert!(why.message.contains("not https"), "{}", why.message);
    assert_eq!(fake.calls(Step::UploadUrl), 3);
    fake.script().insecure_urls = false;
    until("delivered after the pause", || running.waiting() == 0).await;
    assert_eq!(fake.records(), 5);
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_outage_is_tried_at_a_steady_cadence_and_the_backlog_goes_up_as_one() {
    let fake = Fake::default();
    let start = Instant::now();
    let outage = Duration::from_secs(600);
    fake.script().down_until = Some(start + outage);
    // The start-up's data sources list and block script share the outage's first minute.
    fake.other_call().await;
    fake.other_call().await;
    let running = Running::start(&fake);
    while Instant::now() < start + outage {
        running.seal(10);
        tokio::time::sleep(Duration::from_secs(20)).await;
    }
    until("the backlog delivered", || running.waiting() == 0).await;
    let back = Instant::now() - start - outage;
    assert!(
        back <= Duration::from_secs(20),
        "{back:?} after MCAS's return"
    );
    let mut calls: Vec<Instant> = {
        let script = fake.script();
        let uploads = script.calls.iter().map(|&(_, at)| at);
        uploads
            .chain(script.other_calls.iter().copied())
            .filter(|at| *at < start + outage)
            .collect()
    };
    calls.sort();
    for (i, &at) in calls.iter().enumerate() {
        let in_minute = calls[i..]
            .iter()
            .take_while(|&&t| t < at + Duration::from_secs(60))
            .count();
        assert!(
            in_minute <= 4,
            "{in_minute} calls in a minute of the outage"
        );
    }
    assert_eq!(fake.script().ingested.len(), 1, "the backlog as one upload");
    assert_eq!(fake.records(), 300);
    running.stop().await;
}

#[test]
fn batches_older_than_mcas_takes() {
    use super::too_old;
    use std::time::SystemTime;
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let day = Duration::from_secs(86_400);
    assert_eq!(too_old(now - 89 * day, now), None);
    assert_eq!(too_old(now - 90 * day, now), None);
    assert_eq!(too_old(now - 91 * day, now), Some(91 * day));
    // A clock set back: not old.
    assert_eq!(too_old(now + day, now), None);
}

#[test]
fn an_outage_costs_its_cadences_share_of_the_minute() {
    use super::outage_share;
    let s = Duration::from_secs;
    assert_eq!(outage_share(s(15)), 4);
    assert_eq!(outage_share(s(10)), 6);
    assert_eq!(outage_share(s(16)), 3);
    assert_eq!(outage_share(s(60)), 1);
    assert_eq!(outage_share(s(600)), 1, "never less than one");
}
