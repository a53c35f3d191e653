//! `/api/v1/destinations/*`: destinations, their delivery log and dead letters.
//!
//! Creating or enabling a destination, or changing its credentials, checks the credentials with
//! the destination first; nothing is stored or activated when they are rejected. After every
//! change the router is synced, so the pipeline starts or stops at once.

use crate::admin::{json_body, valid_name, AdminState};
use crate::error::{AdminError, ErrorBody};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_destinations::ConfigError;
use sluice_router::DestinationStatus;
use sluice_store::{
    DeadLetter, DeadLetterFilter, DeliveryRecord, DestinationRecord, DestinationUpdate,
    NewDestination,
};
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new()
        .routes(routes!(create_destination, list_destinations))
        .routes(routes!(
            show_destination,
            update_destination,
            delete_destination
        ))
        .routes(routes!(deliveries))
        .routes(routes!(dead_letters))
        .routes(routes!(replay_dead_letters))
}

/// A destination as the API shows it: secrets masked, live status attached.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DestinationView {
    id: String,
    name: String,
    #[serde(rename = "type")]
    kind: String,
    enabled: bool,
    sources: Vec<String>,
    /// The kind's configuration; secrets shown as `••••1234`.
    #[schema(value_type = Object)]
    config: Value,
    paused_reason: Option<String>,
    status: DestinationStatus,
    dead_letters: u64,
    #[serde(serialize_with = "sluice_core::time::serialize")]
    created_at: chrono::DateTime<chrono::Utc>,
    #[serde(serialize_with = "sluice_core::time::serialize")]
    updated_at: chrono::DateTime<chrono::Utc>,
}

pub(crate) async fn view(
    state: &AdminState,
    record: DestinationRecord,
) -> Result<DestinationView, AdminError> {
    let dead_letters = state.store.count_dead_letters(&record.id).await?;
    Ok(DestinationView {
        config: state
            .router
            .registry()
            .masked_config(&record.kind, &record.config),
        status: state.router.status(&record.id),
        dead_letters,
        id: record.id,
        name: record.name,
        kind: record.kind,
        enabled: record.enabled,
        sources: record.sources,
        paused_reason: record.paused_reason,
        created_at: record.created_at,
        updated_at: record.updated_at,
    })
}

/// A configuration problem, named by its field (`config.api_key`).
fn config_error(error: ConfigError) -> AdminError {
    let field = if error.field == "type" {
        error.field.clone()
    } else {
        format!("config.{}", error.field)
    };
    AdminError::invalid(field, error.message)
}

/// Finds a destination by id, else by name.
pub(crate) async fn find(
    state: &AdminState,
    id_or_name: &str,
) -> Result<DestinationRecord, AdminError> {
    if let Some(record) = state.store.destination(id_or_name).await? {
        return Ok(record);
    }
    state
        .store
        .list_destinations()
        .await?
        .into_iter()
        .find(|d| d.name == id_or_name)
        .ok_or_else(|| {
            AdminError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no destination with id or name `{id_or_name}`"),
            )
        })
}

async fn check_sources(state: &AdminState, sources: &[String]) -> Result<(), AdminError> {
    for id in sources {
        if state.store.source(id).await?.is_none() {
            return Err(AdminError::invalid(
                "sources",
                format!("no source with id `{id}`"),
            ));
        }
    }
    Ok(())
}

/// Builds the destination and, when it is to be active, asks it to accept the credentials.
async fn validate(
    state: &AdminState,
    record: &DestinationRecord,
    check: bool,
) -> Result<(), AdminError> {
    let destination = state.router.build(record).map_err(config_error)?;
    if check {
        destination
            .check_credentials()
            .await
            .map_err(config_error)?;
    }
    Ok(())
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateDestination {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub enabled: Option<bool>,
    pub sources: Option<Vec<String>>,
    /// Customer.io: `site_id`, `api_key`, `region` (us/eu), `track_url`?; webhook: `url`, `secret`?.
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
    /// `"now"` (default): only events accepted from now on; `"oldest"`: backfill from the
    /// oldest retained event.
    pub start: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/destinations", tag = "destinations", request_body = CreateDestination,
    responses((status = 201, body = DestinationView, description = "created and delivering at once"), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody, description = "invalid configuration or rejected credentials"), (status = 401, body = ErrorBody)))]
async fn create_destination(
    State(state): State<AdminState>,
    body: Result<Json<CreateDestination>, JsonRejection>,
) -> Result<(StatusCode, Json<DestinationView>), AdminError> {
    let record = create(&state, json_body(body)?).await?;
    Ok((StatusCode::CREATED, Json(view(&state, record).await?)))
}

/// Validates, checks the credentials, stores and activates a destination (API and dashboard).
pub(crate) async fn create(
    state: &AdminState,
    body: CreateDestination,
) -> Result<DestinationRecord, AdminError> {
    let name = valid_name(body.name)?;
    let kind = body.kind.unwrap_or_default();
    if kind.is_empty() {
        return Err(AdminError::invalid(
            "type",
            format!(
                "`type` is required: one of {}",
                state.router.registry().kinds().join(", ")
            ),
        ));
    }
    let sources = body.sources.unwrap_or_default();
    check_sources(state, &sources).await?;
    let stats = state.log.stats().await?;
    let cursor = match body.start.as_deref() {
        None | Some("now") => stats.last_seq.unwrap_or(0),
        Some("oldest") => stats
            .first_seq
            .map_or(stats.last_seq.unwrap_or(0), |first| first - 1),
        Some(_) => {
            return Err(AdminError::invalid(
                "start",
                "`start` must be \"now\" or \"oldest\"",
            ))
        }
    };
    let new = NewDestination {
        name,
        kind,
        enabled: body.enabled.unwrap_or(true),
        sources,
        config: body
            .config
            .unwrap_or_else(|| Value::Object(Default::default())),
    };
    let draft = DestinationRecord {
        id: String::new(),
        name: new.name.clone(),
        kind: new.kind.clone(),
        enabled: new.enabled,
        sources: new.sources.clone(),
        config: new.config.clone(),
        paused_reason: None,
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
    };
    // A duplicate name is reported before the (slower) credentials check.
    if state
        .store
        .list_destinations()
        .await?
        .iter()
        .any(|d| d.name == draft.name)
    {
        return Err(sluice_store::StoreError::Conflict {
            what: "destination",
            name: draft.name,
        }
        .into());
    }
    validate(state, &draft, draft.enabled).await?;
    let record = state.store.create_destination(new, cursor).await?;
    tracing::info!(destination_id = %record.id, name = %record.name, kind = %record.kind, cursor, "destination created");
    state.router.sync().await?;
    Ok(record)
}

#[derive(Serialize, utoipa::ToSchema)]
struct DestinationList {
    destinations: Vec<DestinationView>,
}

#[utoipa::path(get, path = "/api/v1/destinations", tag = "destinations", responses((status = 200, body = DestinationList), (status = 401, body = ErrorBody)))]
async fn list_destinations(
    State(state): State<AdminState>,
) -> Result<Json<DestinationList>, AdminError> {
    Ok(Json(DestinationList {
        destinations: views(&state).await?,
    }))
}

/// Every destination as shown (API list and dashboard).
pub(crate) async fn views(state: &AdminState) -> Result<Vec<DestinationView>, AdminError> {
    let mut views = Vec::new();
    for record in state.store.list_destinations().await? {
        views.push(view(state, record).await?);
    }
    Ok(views)
}

#[utoipa::path(get, path = "/api/v1/destinations/{id}", tag = "destinations", params(("id" = String, Path, description = "id or name")),
    responses((status = 200, body = DestinationView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn show_destination(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<DestinationView>, AdminError> {
    let record = find(&state, &id).await?;
    Ok(Json(view(&state, record).await?))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateDestination {
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub sources: Option<Vec<String>>,
    /// Fields to change; a secret sent back masked keeps its value.
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
}

#[utoipa::path(patch, path = "/api/v1/destinations/{id}", tag = "destinations", params(("id" = String, Path, description = "id or name")), request_body = UpdateDestination,
    responses((status = 200, body = DestinationView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn update_destination(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Result<Json<UpdateDestination>, JsonRejection>,
) -> Result<Json<DestinationView>, AdminError> {
    let record = update(&state, &id, json_body(body)?).await?;
    Ok(Json(view(&state, record).await?))
}

/// Applies a change, checking the credentials whenever the destination is (re)activated or
/// its settings change (API and dashboard).
pub(crate) async fn update(
    state: &AdminState,
    id: &str,
    body: UpdateDestination,
) -> Result<DestinationRecord, AdminError> {
    let current = find(state, id).await?;
    let registry = state.router.registry();
    let name = match body.name {
        Some(name) => Some(valid_name(Some(name))?),
        None => None,
    };
    if let Some(sources) = &body.sources {
        check_sources(state, sources).await?;
    }
    let config = body
        .config
        .as_ref()
        .map(|change| registry.merge_config(&current.kind, &current.config, change));
    let mut next = current.clone();
    if let Some(config) = &config {
        next.config = config.clone();
    }
    next.enabled = body.enabled.unwrap_or(current.enabled);
    let credentials_changed = config.as_ref().is_some_and(|c| c != &current.config);
    let enabling = next.enabled && !current.enabled;
    let was_paused = current.paused_reason.is_some();
    // Check with the destination whenever it is (re)activated or its settings change.
    let check = next.enabled && (credentials_changed || enabling || was_paused);
    validate(state, &next, check).await?;
    let update = DestinationUpdate {
        name,
        enabled: body.enabled,
        sources: body.sources,
        config,
        // A checked configuration lifts a credentials pause.
        paused_reason: check.then_some(None),
    };
    let record = state.store.update_destination(&current.id, update).await?;
    tracing::info!(destination_id = %record.id, enabled = record.enabled, "destination updated");
    state.router.sync().await?;
    Ok(record)
}

#[utoipa::path(delete, path = "/api/v1/destinations/{id}", tag = "destinations", params(("id" = String, Path, description = "id or name")),
    responses((status = 204, description = "deleted with its cursor, held events, dead letters and delivery log"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_destination(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<StatusCode, AdminError> {
    delete(&state, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn delete(state: &AdminState, id: &str) -> Result<(), AdminError> {
    let record = find(state, id).await?;
    state.store.delete_destination(&record.id).await?;
    tracing::info!(destination_id = %record.id, "destination deleted");
    state.router.sync().await?;
    Ok(())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DeliveriesQuery {
    limit: Option<usize>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct DeliveryList {
    deliveries: Vec<DeliveryRecord>,
}

#[utoipa::path(get, path = "/api/v1/destinations/{id}/deliveries", tag = "destinations", params(("id" = String, Path, description = "id or name"), DeliveriesQuery),
    responses((status = 200, body = DeliveryList, description = "newest first"), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn deliveries(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    query: Result<Query<DeliveriesQuery>, QueryRejection>,
) -> Result<Json<DeliveryList>, AdminError> {
    let Query(query) = query.map_err(|e| AdminError::invalid("limit", e.body_text()))?;
    let limit = valid_limit(query.limit, 50)?;
    let record = find(&state, &id).await?;
    Ok(Json(DeliveryList {
        deliveries: state.store.deliveries(&record.id, limit).await?,
    }))
}

fn valid_limit(limit: Option<usize>, default: usize) -> Result<usize, AdminError> {
    let limit = limit.unwrap_or(default);
    if limit == 0 || limit > 1000 {
        return Err(AdminError::invalid(
            "limit",
            "`limit` must be between 1 and 1000",
        ));
    }
    Ok(limit)
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct DeadLetterQuery {
    limit: Option<usize>,
    after: Option<i64>,
    reason: Option<String>,
    person: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct DeadLetterList {
    dead_letters: Vec<DeadLetter>,
    total: u64,
}

#[utoipa::path(get, path = "/api/v1/destinations/{id}/dead-letters", tag = "destinations", params(("id" = String, Path, description = "id or name"), DeadLetterQuery),
    responses((status = 200, body = DeadLetterList, description = "oldest first"), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn dead_letters(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    query: Result<Query<DeadLetterQuery>, QueryRejection>,
) -> Result<Json<DeadLetterList>, AdminError> {
    let Query(query) = query.map_err(|e| AdminError::invalid("query", e.body_text()))?;
    let record = find(&state, &id).await?;
    let filter = DeadLetterFilter {
        ids: Vec::new(),
        reason_contains: query.reason,
        person: query.person,
        after_id: query.after,
        limit: Some(valid_limit(query.limit, 100)?),
    };
    Ok(Json(DeadLetterList {
        dead_letters: state.store.dead_letters(&record.id, &filter).await?,
        total: state.store.count_dead_letters(&record.id).await?,
    }))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplayRequest {
    /// Only these dead letters (by id); all when absent.
    pub ids: Option<Vec<i64>>,
    pub reason: Option<String>,
    pub person: Option<String>,
    pub limit: Option<usize>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct ReplayResult {
    replayed: u64,
}

#[utoipa::path(post, path = "/api/v1/destinations/{id}/dead-letters/replay", tag = "destinations", params(("id" = String, Path, description = "id or name")), request_body(content = Option<ReplayRequest>, description = "which dead letters; all when absent"),
    responses((status = 200, body = ReplayResult, description = "moved back to the held list; delivered in order with each person's other events"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn replay_dead_letters(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Option<Json<ReplayRequest>>,
) -> Result<Json<ReplayResult>, AdminError> {
    let replayed = replay(&state, &id, body.map(|Json(b)| b).unwrap_or_default()).await?;
    Ok(Json(ReplayResult { replayed }))
}

/// Puts dead letters back into the held list and wakes the worker (API and dashboard).
pub(crate) async fn replay(
    state: &AdminState,
    id: &str,
    body: ReplayRequest,
) -> Result<u64, AdminError> {
    let record = find(state, id).await?;
    let filter = DeadLetterFilter {
        ids: body.ids.unwrap_or_default(),
        reason_contains: body.reason,
        person: body.person,
        after_id: None,
        limit: body.limit,
    };
    let replayed = state
        .store
        .replay_dead_letters(&record.id, &filter, chrono::DateTime::UNIX_EPOCH)
        .await?;
    tracing::info!(destination_id = %record.id, replayed, "dead letters replayed");
    state.router.wake(&record.id).await;
    Ok(replayed)
}
