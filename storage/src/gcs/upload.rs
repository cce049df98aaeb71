//! GCS uploads: one multipart/related request for a body held in memory, or a resumable
//! session whose chunks are read from the source as they are sent. A create-only upload
//! carries `ifGenerationMatch=0`, which GCS answers with 412 when the object exists.

use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method};

use super::client::{GcsClient, Request, CHUNK_GRANULE};
use crate::backend::Upload;
use crate::error::ErrorKind;
use crate::transport::pool::parse_http_url;
use crate::transport::{encode, header, HttpError, Payload, Target};

/// The object metadata key of the creation time.
pub const METADATA_TIMESTAMP: &str = "litestream-timestamp";

/// The first byte a resumable session does not hold yet, from its `Range: bytes=0-N` header.
fn persisted(headers: &HeaderMap) -> u64 {
    header(headers, "range")
        .and_then(|r| r.rsplit('-').next())
        .and_then(|n| n.trim().parse::<u64>().ok())
        .map_or(0, |n| n + 1)
}

/// A 412 of a create-only upload: the object is there already.
fn exists_if(create_only: bool, mut e: HttpError) -> HttpError {
    if create_only && e.status == Some(412) {
        e.kind = ErrorKind::AlreadyExists;
    }
    e
}

impl GcsClient {
    fn upload_metadata(name: &str, created_at: SystemTime) -> String {
        serde_json::json!({
            "name": name,
            "contentType": "application/octet-stream",
            "metadata": {
                METADATA_TIMESTAMP: crate::timefmt::format_rfc3339_nano(created_at),
            },
        })
        .to_string()
    }

    fn upload_path(&self, kind: &str, name: &str, create_only: bool) -> String {
        let mut path = format!(
            "/upload/storage/v1/b/{}/o?uploadType={kind}&name={}",
            encode::component(&self.bucket),
            encode::component(name)
        );
        if create_only {
            path.push_str("&ifGenerationMatch=0");
        }
        path
    }

    /// A single multipart/related upload of a body held in memory.
    pub(crate) async fn upload_multipart(
        &self,
        name: &str,
        data: &Bytes,
        up: Upload<'_>,
    ) -> Result<(), HttpError> {
        let (created_at, create_only) = (up.created_at, up.create_only());
        let boundary = format!("litestream-{:016x}", fastrand::u64(..));
        let meta = Self::upload_metadata(name, created_at);
        let mut body = BytesMut::with_capacity(data.len() + meta.len() + 256);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{meta}\r\n\
                 --{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let path = self.upload_path("multipart", name, create_only);
        let mut req = self.request("upload object", Method::POST, Some(name), path);
        req.headers.push((
            "content-type",
            format!("multipart/related; boundary={boundary}"),
        ));
        req.payload = Payload::Bytes(body.freeze());
        self.execute(&req)
            .await
            .map(|_| ())
            .map_err(|e| exists_if(create_only, e))
    }

    /// A resumable upload: a session, then chunks of `chunk` bytes (a multiple of 256 KiB)
    /// each read from `source` when sent. After a failed chunk the session is asked how much
    /// it holds and the upload goes on from there.
    pub(crate) async fn upload_resumable(
        &self,
        name: &str,
        up: Upload<'_>,
    ) -> Result<(), HttpError> {
        let (size, created_at, create_only) = (up.size, up.created_at, up.create_only());
        let path = self.upload_path("resumable", name, create_only);
        let mut req = self.request("start resumable upload", Method::POST, Some(name), path);
        req.headers
            .push(("content-type", "application/json; charset=UTF-8".to_owned()));
        req.headers.push((
            "x-upload-content-type",
            "application/octet-stream".to_owned(),
        ));
        req.headers
            .push(("x-upload-content-length", size.to_string()));
        req.payload = Payload::Bytes(Bytes::from(Self::upload_metadata(name, created_at)));
        let resp = self
            .execute(&req)
            .await
            .map_err(|e| exists_if(create_only, e))?;
        let location = header(&resp.headers, "location").ok_or_else(|| {
            self.error(&req, None, "no session URI in the answer".to_owned())
                .fatal()
        })?;
        let (target, session_path) = parse_http_url(location).ok_or_else(|| {
            self.error(&req, None, format!("unusable session URI {location:?}"))
                .fatal()
        })?;
        let chunk = (self.chunk_size / CHUNK_GRANULE).max(1) * CHUNK_GRANULE;
        let mut sent = 0u64;
        let mut failures = 0u32;
        loop {
            let len = chunk.min(size - sent);
            let last = sent + len == size;
            let range = if len == 0 {
                format!("bytes */{size}")
            } else if last {
                format!("bytes {sent}-{}/{size}", sent + len - 1)
            } else {
                format!("bytes {sent}-{}/*", sent + len - 1)
            };
            let req = Request {
                op: "upload object chunk",
                method: Method::PUT,
                object: Some(name.to_owned()),
                target: target.clone(),
                path: session_path.clone(),
                headers: vec![("content-range", range)],
                payload: Payload::region(up.body, sent, len),
                accept: &[308],
            };
            let outcome = match self.attempt(&req).await {
                Ok(resp) if resp.status.is_success() => return Ok(()),
                Ok(resp) if resp.status.as_u16() == 308 && persisted(&resp.headers) > sent => {
                    sent = persisted(&resp.headers);
                    failures = 0;
                    continue;
                }
                Ok(resp) if resp.status.as_u16() == 308 => {
                    // The session took nothing of the chunk: count it as a failed try.
                    let mut e = self.error(&req, Some(308), "the chunk was not stored".into());
                    e.kind = ErrorKind::Transient;
                    e
                }
                Ok(resp) => self.status_error(&req, resp.status, &resp.body),
                Err(e) => e,
            };
            failures += 1;
            if !outcome.is_retryable() || failures >= self.http.retry.max_attempts {
                return Err(exists_if(create_only, outcome));
            }
            let delay = self.http.retry.delay(failures - 1);
            tracing::warn!(backend = "gs", key = name, error = %outcome, ?delay, "upload chunk failed; resuming");
            tokio::time::sleep(delay).await;
            // Ask the session what it holds before sending more.
            sent = self
                .session_status(&target, &session_path, name, size)
                .await?;
            if sent >= size {
                return Ok(());
            }
        }
    }

    /// How many bytes a resumable session holds (`size` when it is complete).
    async fn session_status(
        &self,
        target: &Target,
        path: &str,
        name: &str,
        size: u64,
    ) -> Result<u64, HttpError> {
        let req = Request {
            op: "query upload status",
            method: Method::PUT,
            object: Some(name.to_owned()),
            target: target.clone(),
            path: path.to_owned(),
            headers: vec![("content-range", format!("bytes */{size}"))],
            payload: Payload::Empty,
            accept: &[308],
        };
        let resp = self.execute(&req).await?;
        if resp.status.is_success() {
            return Ok(size);
        }
        Ok(persisted(&resp.headers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ranges() {
        let mut h = HeaderMap::new();
        assert_eq!(persisted(&h), 0);
        h.insert("range", "bytes=0-262143".parse().expect("header"));
        assert_eq!(persisted(&h), 262_144);
    }
}
