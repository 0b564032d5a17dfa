use axum::extract::{FromRequestParts, MatchedPath};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::StatusCode;

use crate::Vars;

/// The rejection of the [`Vars`] extractor when the route has no [`ChestLayer`](super::ChestLayer):
/// a 500 that names the missing layer.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error(
    "chest::Vars needs chest's layer on this route: add `.route_layer(chest::layer::ChestLayer::new(recorder))`"
)]
pub struct MissingChestLayer;

impl IntoResponse for MissingChestLayer {
    fn into_response(self) -> Response {
        tracing::error!(target: "chest", "{self}");
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

/// Extracts the request's variable store. Needs [`ChestLayer`](super::ChestLayer) on the route.
impl<S: Send + Sync> FromRequestParts<S> for Vars {
    type Rejection = MissingChestLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let vars = parts
            .extensions
            .get::<Vars>()
            .cloned()
            .ok_or(MissingChestLayer)?;
        // Under `Router::layer` the layer ran before routing; the route is known here.
        if let Some(path) = parts.extensions.get::<MatchedPath>() {
            vars.set_route_if_unknown(path.as_str());
        }
        Ok(vars)
    }
}
