//! The axum glue: the shared handler behind the `Vars` extractor, `ChestLayer` where the
//! placement says.

use axum::body::Body;
use axum::error_handling::HandleError;
use axum::extract::State;
use axum::http::{Method, Request, Response, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::{any, MethodRouter};
use axum::Router;
use chest::layer::ChestLayer;
use chest::{Recorder, Vars};
use tower::Layer;

use crate::harness::{
    bind, Framework, Handler, Placement, Reply, Req, TestServer, INNER_ERROR_BODY,
    INNER_ERROR_STATUS,
};

pub struct Axum;

impl Framework for Axum {
    const MIDDLEWARE: &'static str = "ChestLayer";
    const PLACEMENTS: &'static [Placement] =
        &[Placement::Route, Placement::RouterRoutes, Placement::App];

    fn serve(recorder: Recorder, handler: Handler, placement: Placement) -> TestServer {
        serve_router(app(ChestLayer::new(recorder), placement).with_state(handler))
    }

    fn serve_failing_inner(recorder: Recorder, handler: Handler) -> TestServer {
        // A tower service with an error type: it runs the handler, then fails.
        let inner = tower::service_fn(move |req: Request<Body>| async move {
            let vars = req
                .extensions()
                .get::<Vars>()
                .cloned()
                .expect("the layer's Vars");
            handler(&vars, &request_of(req.method(), req.uri()));
            Err::<Response<Body>, Refused>(Refused)
        });
        let service = HandleError::new(ChestLayer::new(recorder).layer(inner), |_: Refused| {
            std::future::ready((
                StatusCode::from_u16(INNER_ERROR_STATUS).expect("a valid status"),
                INNER_ERROR_BODY,
            ))
        });
        serve_router(Router::new().route_service("/items/{id}", service))
    }

    #[cfg(feature = "tracing")]
    fn serve_in_outer_span(recorder: Recorder, handler: Handler) -> TestServer {
        serve_in_outer_span(recorder, handler)
    }
}

#[cfg(feature = "tracing")]
fn serve_in_outer_span(recorder: Recorder, handler: Handler) -> TestServer {
    use tower_http::trace::TraceLayer;
    let app = Router::new()
        .route("/items/{id}", any(endpoint))
        .route_layer(ChestLayer::new(recorder))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<Body>| {
                tracing::info_span!("request", method = %req.method(), user_id = tracing::field::Empty)
            }),
        )
        .with_state(handler);
    serve_router(app)
}

/// The inner service's error.
#[derive(Debug)]
struct Refused;

/// Serves `app` on a free loopback port.
fn serve_router(app: Router) -> TestServer {
    let listener = bind();
    let addr = listener.local_addr().expect("local address");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("axum server");
    });
    TestServer::new(addr, AbortOnDrop(server))
}

fn request_of(method: &Method, uri: &Uri) -> Req {
    Req {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

/// The glue: the framework's extractors in, the shared handler, the framework's response out.
async fn endpoint(
    State(handler): State<Handler>,
    method: Method,
    uri: Uri,
    vars: Vars,
) -> Response<Body> {
    let reply = handler(&vars, &request_of(&method, &uri));
    let status = StatusCode::from_u16(reply.status).expect("a valid status");
    let body = if reply.chunks.is_empty() {
        Body::from(reply.body)
    } else {
        Body::from_stream(Reply::stream(reply.chunks, reply.delay))
    };
    (status, body).into_response()
}

fn app(layer: ChestLayer, placement: Placement) -> Router<Handler> {
    let recorded = |route: MethodRouter<Handler>| match placement {
        Placement::Route => route.layer(layer.clone()),
        Placement::RouterRoutes | Placement::App => route,
    };
    let shop = Router::new().route("/orders/{order}", recorded(any(endpoint)));
    let app = Router::new()
        .route("/items/{id}", recorded(any(endpoint)))
        .nest("/shop", shop)
        .fallback(endpoint);
    match placement {
        Placement::Route => app.route("/bare/{id}", any(endpoint)),
        Placement::RouterRoutes => app.route_layer(layer),
        Placement::App => app.layer(layer),
    }
}

/// Stops the server task when the test ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
