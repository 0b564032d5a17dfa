//! The actix-web middleware: Flask-Chest's decorator for actix-web 4, with the same meaning as the
//! axum [`ChestLayer`](crate::layer::ChestLayer).
//!
//! [`ChestMiddleware`] makes a request id and a [`Vars`] store for each request, runs the handler
//! with the store reachable through the [`Vars`] extractor and the [`chest::vars`](crate::vars)
//! functions, and, once the handler has returned a response (whatever its status), writes the
//! tracked variables to every chest. Handler bodies read the same as with axum.
//!
//! Wrap the resources you want recorded (`Resource::wrap`, like the decorator), a `Scope`, or the
//! whole `App` (`App::wrap`). The route template is actix-web's
//! [`match_pattern`](actix_web::HttpRequest::match_pattern) (`/items/{id}`, never the raw path);
//! a request that matched no resource (the default service) is recorded with no route.
//!
//! ```
//! use actix_web::{web, App};
//! use chest::{actix::ChestMiddleware, MemoryChest, Recorder, Tracked, Vars};
//!
//! async fn handler(vars: Vars) -> &'static str {
//!     vars.set("transaction", 42).unwrap();
//!     "Hello, World!"
//! }
//!
//! let memory = MemoryChest::new();
//! let recorder = Recorder::new()
//!     .chest(memory.clone())
//!     .tracked_vars(Tracked::methods().method("GET", ["transaction"]));
//! let middleware = ChestMiddleware::new(recorder);
//! // In `HttpServer::new(move || ...)`, clone the middleware into each worker's app.
//! let app = App::new().service(
//!     web::resource("/api-endpoint")
//!         .wrap(middleware.clone())
//!         .route(web::get().to(handler)),
//! );
//! ```
//!
//! An error that an inner middleware returns instead of a response (actix-web turns handler
//! errors into responses before this middleware sees them) still has the handler's variables
//! written, without a route, exactly as the axum layer does for a failing inner service; the
//! error is passed on unchanged and cannot carry the request-id header. If a chest write failed
//! and `raise_exceptions` is on, the bare 500 is sent instead.
//!
//! With [`Recorder::request_facts`](crate::Recorder::request_facts) on, the middleware also
//! records the request's [facts](crate::facts), as the axum layer does, and boxes the response
//! body into one that counts its bytes and notices its end; with it off (the default) neither
//! the clock nor the body is touched.

use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Payload, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::error::InternalError;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};

use crate::facts::{CountedMessageBody, Started};
use crate::recorder::{FAILED_WRITE_BODY, FAILED_WRITE_CONTENT_TYPE};
use crate::{Recorder, Vars};

/// An actix-web middleware ([`Transform`]) that records each request's variables into chests.
/// Cloning it is cheap: clone it into the app factory of `HttpServer::new`.
#[derive(Clone, Debug)]
pub struct ChestMiddleware {
    shared: Arc<Shared>,
}

#[derive(Clone, Debug)]
struct Shared {
    /// Shared with the request's body facts, when they are on; each worker has its own.
    recorder: Arc<Recorder>,
    /// The recorder's header names, converted once to actix-web's `http` 0.2 type.
    response_header: Option<HeaderName>,
    incoming_header: Option<HeaderName>,
}

impl ChestMiddleware {
    /// A middleware that records with `recorder`'s chests and settings.
    pub fn new(recorder: Recorder) -> Self {
        let response_header = recorder.header().and_then(actix_header_name);
        let incoming_header = recorder.incoming_id_header().and_then(actix_header_name);
        ChestMiddleware {
            shared: Arc::new(Shared {
                recorder: Arc::new(recorder),
                response_header,
                incoming_header,
            }),
        }
    }

    /// The recorder this middleware uses.
    pub fn recorder(&self) -> &Recorder {
        &self.shared.recorder
    }
}

impl From<Recorder> for ChestMiddleware {
    fn from(recorder: Recorder) -> Self {
        ChestMiddleware::new(recorder)
    }
}

/// actix-web 4 is on `http` 0.2, the recorder on `http` 1: the name goes over by its text.
fn actix_header_name(name: &http::HeaderName) -> Option<HeaderName> {
    // Both versions accept the same header names, so this fails only if they ever diverge.
    HeaderName::from_bytes(name.as_str().as_bytes())
        .map_err(|error| {
            tracing::error!(
                target: "chest",
                header = name.as_str(),
                %error,
                "actix-web refuses the request-id header name; it is neither read nor sent"
            );
        })
        .ok()
}

impl<S, B> Transform<S, ServiceRequest> for ChestMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = ChestService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        // Each actix-web worker gets its own copy: a request then clones an `Rc`, not an `Arc`
        // whose count every worker's core would write.
        ready(Ok(ChestService {
            service,
            shared: Rc::new(Shared {
                recorder: Arc::new(Recorder::clone(&self.shared.recorder)),
                ..Shared::clone(&self.shared)
            }),
        }))
    }
}

/// The service [`ChestMiddleware`] wraps around a resource, scope or app.
#[derive(Debug)]
pub struct ChestService<S> {
    service: S,
    shared: Rc<Shared>,
}

/// The response future of [`ChestService`]: the handler's future, then the chest writes.
pub type ChestFuture<B> =
    Pin<Box<dyn Future<Output = Result<ServiceResponse<EitherBody<B>>, actix_web::Error>>>>;

impl<S, B> Service<ServiceRequest> for ChestService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = ChestFuture<B>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let shared = self.shared.clone();
        let incoming = shared
            .incoming_header
            .as_ref()
            .and_then(|h| req.headers().get(h))
            .and_then(|v| v.to_str().ok());
        let vars = shared.recorder.begin(incoming);
        // Only when facts are on: otherwise the request path does not even read the clock.
        let started = shared.recorder.records_request_facts().then(|| {
            let length = req.headers().get(header::CONTENT_LENGTH);
            Started::now(length.map(HeaderValue::as_bytes))
        });
        req.extensions_mut().insert(vars.clone());
        let method = req.method().clone();
        let handler = vars.scope(self.service.call(req));
        Box::pin(async move {
            let response = match handler.await {
                Ok(response) => response,
                Err(error) => {
                    let finished = shared.recorder.finish(&vars, method.as_str()).await;
                    return Err(if finished.should_fail_response() {
                        InternalError::from_response(error, failed_write_response()).into()
                    } else {
                        error
                    });
                }
            };
            // Read after the handler: routing has run by now even under `App::wrap`, so this is a
            // lookup by resource id, not a second match of the path. It builds a `String` (and
            // the store an `Arc<str>`), so only when there is something to record.
            if started.is_some() || !vars.is_empty() {
                if let Some(pattern) = response.request().match_pattern() {
                    vars.set_route_if_unknown(&pattern);
                }
            }
            let body_facts = started.map(|started| {
                let status = response.status().as_u16();
                started.at_headers(&shared.recorder, &vars, method.as_str(), status)
            });
            let finished = shared.recorder.finish(&vars, method.as_str()).await;
            let mut response = match body_facts {
                _ if finished.should_fail_response() => response
                    .into_response(failed_write_response())
                    .map_into_right_body(),
                // The counted body is boxed, as the 500 is: no new body type when facts are off.
                Some(facts) => response
                    .map_body(|_, body| BoxBody::new(CountedMessageBody::new(body, facts)))
                    .map_into_right_body(),
                None => response.map_into_left_body(),
            };
            if let Some(name) = &shared.response_header {
                if let Ok(value) = HeaderValue::from_str(vars.request_id()) {
                    response.headers_mut().insert(name.clone(), value);
                }
            }
            Ok(response)
        })
    }
}

/// The response sent when a chest failed and `raise_exceptions` is on: it says nothing of the
/// cause, which is logged.
fn failed_write_response() -> HttpResponse<BoxBody> {
    HttpResponse::build(StatusCode::INTERNAL_SERVER_ERROR)
        .insert_header((header::CONTENT_TYPE, FAILED_WRITE_CONTENT_TYPE))
        .body(FAILED_WRITE_BODY)
}

/// The error of the [`Vars`] extractor when the request did not go through [`ChestMiddleware`]:
/// a 500 that names the missing middleware.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error(
    "chest::Vars needs chest's middleware on this route: add `.wrap(chest::actix::ChestMiddleware::new(recorder))`"
)]
pub struct MissingChestMiddleware;

impl ResponseError for MissingChestMiddleware {
    fn status_code(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }

    fn error_response(&self) -> HttpResponse<BoxBody> {
        tracing::error!(target: "chest", "{self}");
        HttpResponse::build(self.status_code())
            .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
            .body(self.to_string())
    }
}

/// Extracts the request's variable store. Needs [`ChestMiddleware`] around the route.
impl FromRequest for Vars {
    type Error = MissingChestMiddleware;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<Vars>()
                .cloned()
                .ok_or(MissingChestMiddleware),
        )
    }
}
