//! The S3 operations a replica uses: PutObject (create-only with `If-None-Match: *`),
//! multipart uploads, ListObjectsV2, DeleteObjects, HeadObject, and the ranged GetObject the
//! shared resumable reader drives.

use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};

use super::client::{Request, S3Client};
use super::settings::Flavor;
use crate::error::ErrorKind;
use crate::transport::body::Digests;
use crate::transport::range::{Get, Ranged};
use crate::transport::{header, size_and_created, HttpError, Payload, Sent};
use crate::xml;

impl S3Client {
    /// PutObject; with `create_only`, `If-None-Match: *` makes S3 refuse to replace an object
    /// (412, or 409 when another conditional write of the key is in flight).
    pub(crate) async fn put_object(
        &self,
        key: &str,
        payload: Payload,
        headers: Vec<(&'static str, String)>,
        create_only: bool,
    ) -> Result<(), HttpError> {
        let mut req = Request::new("put object", Method::PUT, Some(key.to_owned()));
        req.headers = headers;
        if create_only {
            req.headers.push(("if-none-match", "*".to_owned()));
        }
        req.payload = payload;
        req.content_md5 = self.cfg.require_content_md5;
        self.execute(&req)
            .await
            .map(|_| ())
            .map_err(|e| exists_if(create_only, e))
    }

    pub(crate) async fn create_multipart(
        &self,
        key: &str,
        headers: Vec<(&'static str, String)>,
    ) -> Result<String, HttpError> {
        let mut req = Request::new(
            "create multipart upload",
            Method::POST,
            Some(key.to_owned()),
        )
        .query("uploads", None);
        req.headers = headers;
        let resp = self.execute(&req).await?;
        let text = String::from_utf8_lossy(&resp.body);
        xml::text(&text, "UploadId")
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                self.error(&req, None, "", "response without UploadId".to_owned())
                    .fatal()
            })
    }

    pub(crate) async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: usize,
        payload: Payload,
    ) -> Result<String, HttpError> {
        let mut req = Request::new("upload part", Method::PUT, Some(key.to_owned()))
            .query("partNumber", part_number.to_string())
            .query("uploadId", upload_id.to_owned());
        req.headers = self.sse_c_headers();
        req.payload = payload;
        req.content_md5 = self.cfg.require_content_md5;
        let resp = self.execute(&req).await?;
        header(&resp.headers, "etag")
            .map(str::to_owned)
            .ok_or_else(|| self.error(&req, None, "", format!("part {part_number} without ETag")))
    }

    /// CompleteMultipartUpload; with `create_only`, refused when the key exists.
    pub(crate) async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        etags: &[String],
        create_only: bool,
    ) -> Result<(), HttpError> {
        let mut req = Request::new(
            "complete multipart upload",
            Method::POST,
            Some(key.to_owned()),
        )
        .query("uploadId", upload_id.to_owned());
        if create_only {
            req.headers.push(("if-none-match", "*".to_owned()));
        }
        req.payload = Payload::Bytes(Bytes::from(xml::complete_multipart_request(etags)));
        let resp = self
            .execute(&req)
            .await
            .map_err(|e| exists_if(create_only, e))?;
        // S3 can answer 200 and still fail the completion in the body.
        let text = String::from_utf8_lossy(&resp.body);
        if let Some(doc) = xml::parse_error(&text) {
            let err = self.error(&req, Some(200), &doc.code, doc.message);
            return Err(exists_if(create_only, err.fatal()));
        }
        Ok(())
    }

    pub(crate) async fn abort_multipart(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<(), HttpError> {
        let req = Request::new(
            "abort multipart upload",
            Method::DELETE,
            Some(key.to_owned()),
        )
        .query("uploadId", upload_id.to_owned());
        self.execute(&req).await.map(|_| ())
    }

    pub(crate) async fn list_page(
        &self,
        prefix: &str,
        token: Option<&str>,
    ) -> Result<xml::ListPage, HttpError> {
        let mut req = Request::new("list objects", Method::GET, None)
            .query("list-type", "2".to_owned())
            .query("prefix", prefix.to_owned());
        if let Some(t) = token {
            req = req.query("continuation-token", t.to_owned());
        }
        let resp = self.execute(&req).await?;
        let text = String::from_utf8_lossy(&resp.body);
        xml::parse_list_v2(&text).map_err(|e| {
            let mut err = self.error(&req, Some(resp.status.as_u16()), "", e).fatal();
            err.target = format!("s3://{}/{}", self.cfg.bucket, prefix);
            err
        })
    }

    /// Deletes up to 1000 keys; returns the keys S3 reported as failed, with code and message.
    pub(crate) async fn delete_objects(
        &self,
        keys: &[String],
    ) -> Result<Vec<(String, String, String)>, HttpError> {
        let mut req = Request::new("delete objects", Method::POST, None).query("delete", None);
        req.payload = Payload::Bytes(Bytes::from(xml::delete_request(keys, true)));
        // S3 insists on a body checksum for DeleteObjects; Litestream sends Content-MD5
        // unless told the provider rejects it.
        req.content_md5 = self.cfg.require_content_md5;
        let resp = self.execute(&req).await?;
        let text = String::from_utf8_lossy(&resp.body);
        Ok(xml::parse_delete_errors(&text))
    }

    /// Size and `litestream-timestamp` metadata of an object, or `None` if it is absent.
    pub(crate) async fn head_object(
        &self,
        key: &str,
    ) -> Result<Option<(u64, Option<SystemTime>)>, HttpError> {
        let mut req = Request::new("head object", Method::HEAD, Some(key.to_owned()));
        req.headers = self.sse_c_headers();
        match self.execute(&req).await {
            Ok(resp) => {
                let (size, created) =
                    size_and_created(&resp.headers, "x-amz-meta-litestream-timestamp");
                // Litestream's OSS client writes the timestamp through OSS's own API, where user
                // metadata is `x-oss-meta-` (docs/storage.md#oss).
                let oss = || {
                    (self.cfg.flavor == Flavor::Oss)
                        .then(|| header(&resp.headers, "x-oss-meta-litestream-timestamp"))
                        .flatten()
                        .and_then(crate::timefmt::parse_rfc3339)
                };
                Ok(Some((size, created.or_else(oss))))
            }
            Err(e) if e.status == Some(404) && e.code != "NoSuchBucket" => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A create-only write that S3 refused because the key exists (412), or because another
/// conditional write of it is in flight (409): the key is taken.
fn exists_if(create_only: bool, mut e: HttpError) -> HttpError {
    let taken = matches!(e.status, Some(412) | Some(409))
        || matches!(
            e.code.as_str(),
            "PreconditionFailed" | "ConditionalRequestConflict"
        );
    if create_only && taken {
        e.kind = ErrorKind::AlreadyExists;
    }
    e
}

#[async_trait]
impl Ranged for S3Client {
    async fn send_get(&self, get: Get<'_>) -> Result<Sent, HttpError> {
        let mut req = Request::new("get object", Method::GET, Some(get.key.to_owned()));
        req.headers = self.sse_c_headers();
        req.headers.extend(get.headers("range"));
        let dest = self.dest(Some(get.key)).await?;
        self.attempt(&req, &dest, &Digests::none()).await
    }

    fn get_target(&self, key: &str) -> (&'static str, String) {
        ("get object", self.describe(Some(key)))
    }

    fn status_error(&self, key: &str, status: StatusCode, _: &HeaderMap, body: &[u8]) -> HttpError {
        let req = Request::new("get object", Method::GET, Some(key.to_owned()));
        S3Client::status_error(self, &req, status, body)
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, HttpError> {
        Ok(self.head_object(key).await?.map(|(size, _)| size))
    }
}
