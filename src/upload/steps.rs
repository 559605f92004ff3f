//! The three MCAS steps of an upload, as the uploader sees them: a trait, so that the
//! uploader's logic runs in unit tests against a scripted MCAS on paused time, and its
//! implementation by [`McasClient`] for one tenant's data source and log format.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;

use crate::mcas::log_format::Chosen;
use crate::mcas::{blob, ApiError, McasClient, UploadTarget};
use crate::spool::SealedBatch;

/// MCAS as the uploader talks to it.
pub trait Mcas: Send + Sync + 'static {
    /// Step 1: where to put a file of this name.
    fn upload_url(
        &self,
        file_name: &str,
    ) -> impl Future<Output = Result<UploadTarget, ApiError>> + Send;

    /// Step 2: the batch's file to the blob store.
    fn put_blob(
        &self,
        target: &UploadTarget,
        batch: &SealedBatch,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// Step 2 in pieces, for an Azure `target` only: `piece` staged as block `index` of
    /// its blob, not yet part of it.
    fn stage_block(
        &self,
        target: &UploadTarget,
        index: usize,
        piece: Bytes,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// The end of step 2 in pieces: blocks `0..count` staged at `target`, in order,
    /// become its blob.
    fn commit_blocks(
        &self,
        target: &UploadTarget,
        count: usize,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// Step 3: the file at `target` is complete and belongs to the data source.
    fn done_upload(
        &self,
        target: &UploadTarget,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// Whether an API call could be made now without waiting for the rate limiter.
    fn call_available_now(&self) -> bool {
        self.wait_for_calls(1).is_zero()
    }

    /// How long until `calls` more API calls could all have gone through the rate
    /// limiter, one after the other.
    fn wait_for_calls(&self, calls: u32) -> Duration;

    /// Waits until an API call could be made, without making it.
    fn call_available(&self) -> impl Future<Output = ()> + Send;

    /// The most API calls the rate limiter ever lets go back to back.
    fn most_back_to_back(&self) -> u32;

    /// How long until the API calls of the process (of every kind) in the last minute
    /// are fewer than `share`: while MCAS fails for every batch, attempts keep to that
    /// share of the tenant's throttle.
    fn wait_for_share(&self, share: u32) -> Duration;

    /// The log format upload_url is given now, for the advice of a refusal ("" while
    /// not decided).
    fn source_name(&self) -> String {
        String::new()
    }
}

/// The uploads of one tenant's data source, through its client.
#[derive(Debug, Clone)]
pub struct McasUploads {
    pub client: McasClient,
    /// The log format passed to upload_url, as decided from `mcas.source` (with `auto`,
    /// by the data sources watcher: the first upload_url waits for its first decision).
    pub source: Chosen,
    /// The data source named in done_upload (`mcas.data_source`).
    pub data_source: String,
    /// The base of a blob PUT's allowance (`upload.timeout`).
    pub timeout: Duration,
}

impl Mcas for McasUploads {
    async fn upload_url(&self, file_name: &str) -> Result<UploadTarget, ApiError> {
        let source = self.source.get().await;
        self.client.upload_url(file_name, &source.name).await
    }

    async fn put_blob(&self, target: &UploadTarget, batch: &SealedBatch) -> Result<(), ApiError> {
        blob::put(
            self.client.http(),
            target,
            &batch.path,
            batch.gzip_bytes,
            self.timeout,
        )
        .await
    }

    async fn stage_block(
        &self,
        target: &UploadTarget,
        index: usize,
        piece: Bytes,
    ) -> Result<(), ApiError> {
        blob::put_block(self.client.http(), &target.url, index, piece, self.timeout).await
    }

    async fn commit_blocks(&self, target: &UploadTarget, count: usize) -> Result<(), ApiError> {
        blob::put_block_list(self.client.http(), &target.url, count, self.timeout).await
    }

    async fn done_upload(&self, target: &UploadTarget) -> Result<(), ApiError> {
        self.client
            .done_upload(&target.url, &self.data_source)
            .await
    }

    fn wait_for_calls(&self, calls: u32) -> Duration {
        self.client.wait_for_calls(calls)
    }

    async fn call_available(&self) {
        self.client.call_available().await
    }

    fn wait_for_share(&self, share: u32) -> Duration {
        self.client.wait_for_share(share)
    }

    fn most_back_to_back(&self) -> u32 {
        self.client.most_back_to_back()
    }

    fn source_name(&self) -> String {
        self.source.now().map(|c| c.name).unwrap_or_default()
    }
}
