//! The actix-web glue: the shared handler behind the `Vars` extractor, `ChestMiddleware` where
//! the placement says. Also the one behaviour only actix-web has: an inner middleware's error.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use chest::actix::ChestMiddleware;
use chest::{ErrorKind, MemoryChest, Recorder, Value, Vars};

use crate::harness::{bind, Framework, Handler, Placement, Reply, Req, TestServer};

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
    HttpResponse::build(StatusCode::from_u16(reply.status).expect("a valid status"))
        .body(reply.body)
}

/// Stops the server when the test ends (the stop command is sent at once; nothing waits).
struct StopOnDrop(actix_web::dev::ServerHandle);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        drop(self.0.stop(false));
    }
}

/// Lets the handler run, then fails the request, as an auth or validation middleware might.
async fn fail_after_the_handler(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse, actix_web::Error> {
    next.call(req).await?;
    Err(actix_web::error::ErrorForbidden(
        "refused after the handler",
    ))
}

fn sets_a(vars: &Vars, _: &Req) -> Reply {
    vars.set("a", 1).unwrap();
    Reply::ok("")
}

/// Serves `/items/{id}` with an inner middleware that errors after the handler.
fn serve_failing_inner(recorder: Recorder) -> TestServer {
    let middleware = ChestMiddleware::new(recorder);
    let handler = web::Data::new(sets_a as Handler);
    serve_app!(move || App::new().app_data(handler.clone()).service(
        items()
            .wrap(from_fn(fail_after_the_handler))
            .wrap(middleware.clone())
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inner_middleware_error_still_writes() {
    let memory = MemoryChest::new();
    let server = serve_failing_inner(Recorder::new().chest(memory.clone()));
    let answer = server.get("/items/1").await;
    assert_eq!(answer.status, 403, "the inner error goes out unchanged");
    let records = memory.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].value, Value::Int(1));
    assert_eq!(&*records[0].method, "GET");
    // Without the response, the request (and so its route) is out of reach.
    assert_eq!(records[0].route, None);

    let broken = MemoryChest::named("broken-chest");
    broken.fail_with(Some(ErrorKind::Permanent));
    let server = serve_failing_inner(Recorder::new().chest(broken));
    let answer = server.get("/items/1").await;
    assert_eq!(
        answer.status, 500,
        "raise_exceptions on: the failed write wins"
    );
    assert_eq!(answer.body, "Internal Server Error");
}
