//! The actix-web glue: the shared handler behind the `Vars` extractor, `ChestMiddleware` where
//! the placement says.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use chest::actix::ChestMiddleware;
use chest::{Recorder, Vars};

use crate::harness::{
    bind, Framework, Handler, Placement, Reply, Req, TestServer, INNER_ERROR_BODY,
    INNER_ERROR_STATUS,
};

pub struct Actix;

/// Starts an actix-web server for the app factory on its own thread and actix system.
macro_rules! serve_app {
    ($factory:expr) => {{
        let listener = bind();
        let addr = listener.local_addr().expect("local address");
        let factory = $factory;
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(factory)
                    .workers(2)
                    .disable_signals()
                    .listen(listener)
                    .expect("listen")
                    .run();
                handle_tx.send(server.handle()).expect("send the handle");
                server.await
            })
        });
        let handle = handle_rx.recv().expect("the server starts");
        TestServer::new(addr, StopOnDrop(handle))
    }};
}

impl Framework for Actix {
    const MIDDLEWARE: &'static str = "ChestMiddleware";
    const PLACEMENTS: &'static [Placement] = &[Placement::Route, Placement::App];

    fn serve(recorder: Recorder, handler: Handler, placement: Placement) -> TestServer {
        let middleware = ChestMiddleware::new(recorder);
        let handler = web::Data::new(handler);
        match placement {
            Placement::Route => serve_app!(move || App::new()
                .app_data(handler.clone())
                .service(items().wrap(middleware.clone()))
                .service(web::scope("/shop").service(orders().wrap(middleware.clone())))
                .service(web::resource("/bare/{id}").route(web::route().to(endpoint)))
                .default_service(web::to(endpoint))),
            Placement::App => serve_app!(move || App::new()
                .wrap(middleware.clone())
                .app_data(handler.clone())
                .service(items())
                .service(web::scope("/shop").service(orders()))
                .default_service(web::to(endpoint))),
            Placement::RouterRoutes => unreachable!("not in Actix::PLACEMENTS"),
        }
    }

    #[cfg(feature = "tracing")]
    fn serve_in_outer_span(recorder: Recorder, handler: Handler) -> TestServer {
        let middleware = ChestMiddleware::new(recorder);
        let handler = web::Data::new(handler);
        // The last `wrap` is the outermost.
        serve_app!(move || App::new().app_data(handler.clone()).service(
            items()
                .wrap(middleware.clone())
                .wrap(from_fn(in_request_span))
        ))
    }

    fn serve_failing_inner(recorder: Recorder, handler: Handler) -> TestServer {
        // actix-web turns a handler's error into a response before any middleware sees it, so
        // the failing inner service is a middleware that errors after the handler, as an auth
        // or validation middleware might.
        let middleware = ChestMiddleware::new(recorder);
        let handler = web::Data::new(handler);
        serve_app!(move || App::new().app_data(handler.clone()).service(
            items()
                .wrap(from_fn(fail_after_the_handler))
                .wrap(middleware.clone())
        ))
    }
}

fn items() -> actix_web::Resource {
    web::resource("/items/{id}").route(web::route().to(endpoint))
}

fn orders() -> actix_web::Resource {
    web::resource("/orders/{order}").route(web::route().to(endpoint))
}

/// The glue: the framework's extractors in, the shared handler, the framework's response out.
async fn endpoint(handler: web::Data<Handler>, req: HttpRequest, vars: Vars) -> HttpResponse {
    let reply = handler.get_ref()(
        &vars,
        &Req {
            method: req.method().to_string(),
            path: req.path().to_owned(),
        },
    );
    let mut response =
        HttpResponse::build(StatusCode::from_u16(reply.status).expect("a valid status"));
    if reply.chunks.is_empty() {
        response.body(reply.body)
    } else {
        response.streaming(Reply::stream(reply.chunks, reply.delay))
    }
}

/// The request span, made outside chest's middleware and entered around the rest.
#[cfg(feature = "tracing")]
async fn in_request_span(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    use tracing::Instrument;
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        user_id = tracing::field::Empty
    );
    next.call(req).instrument(span).await
}

/// Stops the server when the test ends (the stop command is sent at once; nothing waits).
struct StopOnDrop(actix_web::dev::ServerHandle);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        drop(self.0.stop(false));
    }
}

/// Lets the handler run, then fails the request.
async fn fail_after_the_handler(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse, actix_web::Error> {
    next.call(req).await?;
    Err(actix_web::error::InternalError::new(
        INNER_ERROR_BODY,
        StatusCode::from_u16(INNER_ERROR_STATUS).expect("a valid status"),
    )
    .into())
}
