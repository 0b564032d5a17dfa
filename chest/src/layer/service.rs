use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::MatchedPath;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};

use crate::chest::{BoxError, BoxFuture};
use crate::facts::{CountedBody, Started};
use crate::recorder::{FAILED_WRITE_BODY, FAILED_WRITE_CONTENT_TYPE};
use crate::Recorder;

/// The service [`ChestLayer`](super::ChestLayer) wraps around a route or router.
#[derive(Clone, Debug)]
pub struct ChestService<S> {
    inner: S,
    recorder: Arc<Recorder>,
}

impl<S> ChestService<S> {
    pub(super) fn new(inner: S, recorder: Arc<Recorder>) -> Self {
        ChestService { inner, recorder }
    }
}

/// The response future of [`ChestService`]: the handler's future, then the chest writes.
pub struct ResponseFuture<E>(BoxFuture<'static, Result<Response<Body>, E>>);

impl<E> Future for ResponseFuture<E> {
    type Output = Result<Response<Body>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl<S, ReqBody, ResBody> tower_service::Service<Request<ReqBody>> for ChestService<S>
where
    S: tower_service::Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let recorder = self.recorder.clone();
        let incoming = recorder
            .incoming_id_header()
            .and_then(|h| req.headers().get(h))
            .and_then(|v| v.to_str().ok());
        let vars = recorder.begin(incoming);
        if let Some(path) = req.extensions().get::<MatchedPath>() {
            vars.set_route_if_unknown(path.as_str());
        }
        // Only when facts are on: otherwise the request path does not even read the clock.
        let started = recorder.records_request_facts().then(|| {
            let length = req.headers().get(http::header::CONTENT_LENGTH);
            Started::now(length.map(HeaderValue::as_bytes))
        });
        req.extensions_mut().insert(vars.clone());
        let method = req.method().clone();
        let handler = vars.scope(self.inner.call(req));
        ResponseFuture(Box::pin(async move {
            let response = handler.await;
            let body_facts = match (&response, started) {
                (Ok(response), Some(started)) => Some(started.at_headers(
                    &recorder,
                    &vars,
                    method.as_str(),
                    response.status().as_u16(),
                )),
                _ => None,
            };
            // Recorded whether the inner service answered or failed: what the handler set before
            // an error is kept, as with actix-web.
            let finished = recorder.finish(&vars, method.as_str()).await;
            let mut response = match response {
                _ if finished.should_fail_response() => internal_server_error(),
                Ok(response) => match body_facts {
                    Some(facts) => response.map(|body| Body::new(CountedBody::new(body, facts))),
                    None => response.map(Body::new),
                },
                Err(error) => return Err(error),
            };
            if let Some(header) = recorder.header() {
                if let Ok(value) = HeaderValue::from_str(vars.request_id()) {
                    response.headers_mut().insert(header.clone(), value);
                }
            }
            Ok(response)
        }))
    }
}

/// The response sent when a chest failed and `raise_exceptions` is on: it says nothing of the
/// cause, which is logged.
fn internal_server_error() -> Response<Body> {
    let mut response = Response::new(Body::from(FAILED_WRITE_BODY));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(FAILED_WRITE_CONTENT_TYPE),
    );
    response
}
