//! The dashboard: server-rendered pages (minijinja templates compiled into the binary) with
//! htmx for live parts. Every form is a plain POST that works without JavaScript; every POST
//! carries the session's CSRF token. Pages use the same operations as the admin API, so the
//! two cannot disagree.

use crate::admin::{constant_time_eq, create_source_record, find_source, AdminState, CreateSource};
use crate::destinations::{self, CreateDestination, ReplayRequest, UpdateDestination};
use crate::error::AdminError;
use crate::sessions;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use minijinja::{context, Environment, Value};
use serde::Deserialize;
use sluice_store::DeadLetterFilter;
use std::collections::HashMap;
use std::sync::OnceLock;

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("login.html", include_str!("../templates/login.html")),
    ("sources.html", include_str!("../templates/sources.html")),
    ("source.html", include_str!("../templates/source.html")),
    (
        "destinations.html",
        include_str!("../templates/destinations.html"),
    ),
    (
        "destination_rows.html",
        include_str!("../templates/destination_rows.html"),
    ),
    (
        "destination_new.html",
        include_str!("../templates/destination_new.html"),
    ),
    (
        "destination.html",
        include_str!("../templates/destination.html"),
    ),
];

fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            // The templates are compiled in and covered by tests; a broken one fails at start.
            if let Err(error) = env.add_template(name, source) {
                tracing::error!(%error, template = name, "dashboard template does not compile");
            }
        }
        env
    })
}

pub fn routes(state: AdminState) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui") }))
        .route("/ui", get(home))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/sources", get(sources_page).post(create_source))
        .route("/ui/sources/{id}", get(source_page))
        .route(
            "/ui/destinations",
            get(destinations_page).post(create_destination),
        )
        .route("/ui/destinations/rows", get(destination_rows))
        .route("/ui/destinations/new", get(new_destination_page))
        .route("/ui/destinations/{id}", get(destination_page))
        .route(
            "/ui/destinations/{id}/credentials",
            post(update_credentials),
        )
        .route("/ui/destinations/{id}/enable", post(enable))
        .route("/ui/destinations/{id}/disable", post(disable))
        .route("/ui/destinations/{id}/delete", post(delete))
        .route("/ui/destinations/{id}/replay", post(replay))
        .route("/ui/assets/{file}", get(asset))
        .with_state(state)
}

/// A signed-in request: its CSRF token, for the page's forms.
struct Session {
    csrf: String,
}

fn session(state: &AdminState, headers: &HeaderMap) -> Option<Session> {
    let id = sessions::session_id(headers)?;
    state.sessions.csrf(&id).map(|csrf| Session { csrf })
}

/// Why a page or form was not served.
enum Refused {
    /// No session: to the sign-in page.
    SignIn,
    /// The form's CSRF token is not the session's.
    ExpiredForm,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::SignIn => Redirect::to("/ui/login").into_response(),
            Refused::ExpiredForm => (
                StatusCode::FORBIDDEN,
                "The form expired; reload the page and try again.",
            )
                .into_response(),
        }
    }
}

/// Pages need a session; without one the browser goes to the sign-in page.
fn require_session(state: &AdminState, headers: &HeaderMap) -> Result<Session, Refused> {
    session(state, headers).ok_or(Refused::SignIn)
}

/// A form POST: a session and its CSRF token.
fn require_form(state: &AdminState, headers: &HeaderMap, sent: &str) -> Result<Session, Refused> {
    let session = require_session(state, headers)?;
    if !constant_time_eq(sent.as_bytes(), session.csrf.as_bytes()) {
        return Err(Refused::ExpiredForm);
    }
    Ok(session)
}

fn render(name: &str, ctx: Value) -> Response {
    let rendered = templates()
        .get_template(name)
        .and_then(|template| template.render(ctx));
    match rendered {
        Ok(html) => {
            let mut response = Html(html).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
                ),
            );
            headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
            response
        }
        Err(error) => {
            tracing::error!(%error, template = name, "dashboard page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "The page could not be rendered; see the server log.",
            )
                .into_response()
        }
    }
}

/// An API error shown on a page: field errors go beside their fields.
fn field_errors(error: &AdminError) -> HashMap<String, String> {
    let mut errors = HashMap::new();
    if error.fields.is_empty() {
        errors.insert("form".to_owned(), error.message.clone());
    }
    for field in &error.fields {
        let field = field.strip_prefix("config.").unwrap_or(field);
        errors.insert(field.to_owned(), error.message.clone());
    }
    errors
}

async fn home(State(state): State<AdminState>, headers: HeaderMap) -> Redirect {
    match session(&state, &headers) {
        Some(_) => Redirect::to("/ui/destinations"),
        None => Redirect::to("/ui/login"),
    }
}

async fn login_page() -> Response {
    render("login.html", context! {})
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(state): State<AdminState>, Form(form): Form<LoginForm>) -> Response {
    if !constant_time_eq(form.token.trim().as_bytes(), state.admin_token.as_bytes()) {
        let mut page = render(
            "login.html",
            context! { error => "That is not the admin token. It is in DATA_DIR/admin-token, and was printed when sluice first started." },
        );
        *page.status_mut() = StatusCode::UNAUTHORIZED;
        return page;
    }
    let (id, _) = state.sessions.start();
    let mut response = Redirect::to("/ui/destinations").into_response();
    if let Ok(cookie) = HeaderValue::from_str(&sessions::cookie(&id, state.tls)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(refused) = require_form(&state, &headers, &form.csrf) {
        return refused.into_response();
    }
    if let Some(id) = sessions::session_id(&headers) {
        state.sessions.end(&id);
    }
    let mut response = Redirect::to("/ui/login").into_response();
    if let Ok(cookie) = HeaderValue::from_str(&sessions::expired_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

async fn sources_page(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let session = match require_session(&state, &headers) {
        Ok(session) => session,
        Err(refused) => return refused.into_response(),
    };
    sources_view(&state, &session, HashMap::new(), None).await
}

async fn sources_view(
    state: &AdminState,
    session: &Session,
    errors: HashMap<String, String>,
    name: Option<String>,
) -> Response {
    match state.store.list_sources().await {
        Ok(sources) => {
            let status = if errors.is_empty() {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            let mut page = render(
                "sources.html",
                context! { csrf => session.csrf, sources, errors, name },
            );
            *page.status_mut() = status;
            page
        }
        Err(error) => AdminError::from(error).into_response(),
    }
}

#[derive(Deserialize)]
struct SourceForm {
    csrf: String,
    name: String,
    kind: String,
    #[serde(default)]
    allowed_origins: String,
}

async fn create_source(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Form(form): Form<SourceForm>,
) -> Response {
    let session = match require_form(&state, &headers, &form.csrf) {
        Ok(session) => session,
        Err(refused) => return refused.into_response(),
    };
    let origins: Vec<String> = form
        .allowed_origins
        .split([',', '\n', ' '])
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(str::to_owned)
        .collect();
    let body = CreateSource {
        name: Some(form.name.clone()),
        kind: Some(form.kind),
        allowed_origins: Some(origins),
        ..CreateSource::default()
    };
    match create_source_record(&state, body).await {
        Ok(source) => Redirect::to(&format!("/ui/sources/{}", source.id)).into_response(),
        Err(error) => sources_view(&state, &session, field_errors(&error), Some(form.name)).await,
    }
}

async fn source_page(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let session = match require_session(&state, &headers) {
        Ok(session) => session,
        Err(refused) => return refused.into_response(),
    };
    let source = match find_source(&state, &id).await {
        Ok(source) => source,
        Err(error) => return error.into_response(),
    };
    let host = sluice_collector::browser::PublicBase::resolve(
        state.public_url.as_deref(),
        state.tls,
        &headers,
    )
    .url();
    let snippet = sluice_collector::browser::snippet(&host, &source.write_key);
    let mobile_host = host
        .split_once("://")
        .map_or(host.as_str(), |(_, h)| h)
        .to_owned();
    render(
        "source.html",
        context! { csrf => session.csrf, source, snippet, host, mobile_host },
    )
}

async fn destinations_page(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let session = match require_session(&state, &headers) {
        Ok(session) => session,
        Err(refused) => return refused.into_response(),
    };
    match destinations::views(&state).await {
        Ok(destinations) => render(
            "destinations.html",
            context! { csrf => session.csrf, destinations },
        ),
        Err(error) => error.into_response(),
    }
}

/// The live status table, refreshed by htmx every two seconds.
async fn destination_rows(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Err(refused) = require_session(&state, &headers) {
        return refused.into_response();
    }
    match destinations::views(&state).await {
        Ok(destinations) => render("destination_rows.html", context! { destinations }),
        Err(error) => error.into_response(),
    }
}

async fn new_destination_page(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let session = match require_session(&state, &headers) {
        Ok(session) => session,
        Err(refused) => return refused.into_response(),
    };
    render(
        "destination_new.html",
        context! { csrf => session.csrf, form => context! { region => "us" }, errors => HashMap::<String, String>::new() },
    )
}

#[derive(Deserialize, serde::Serialize)]
struct CustomerIoForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    site_id: String,
    #[serde(default)]
    api_key: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    track_url: String,
}

impl CustomerIoForm {
    fn config(&self) -> serde_json::Value {
        let mut config = serde_json::json!({"site_id": self.site_id.trim(), "region": self.region});
        if !self.api_key.trim().is_empty() {
            config["api_key"] = self.api_key.trim().into();
        }
        if !self.track_url.trim().is_empty() {
            config["track_url"] = self.track_url.trim().into();
        }
        config
    }

    /// What the form shows again after an error: never the API key.
    fn shown(&self) -> Value {
        context! { name => self.name, site_id => self.site_id, region => self.region, track_url => self.track_url }
    }
}

async fn create_destination(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Form(form): Form<CustomerIoForm>,
) -> Response {
    let session = match require_form(&state, &headers, &form.csrf) {
        Ok(session) => session,
        Err(refused) => return refused.into_response(),
    };
    let body = CreateDestination {
        name: Some(form.name.clone()),
        kind: Some("customerio".into()),
        config: Some(form.config()),
        ..CreateDestination::default()
    };
    match destinations::create(&state, body).await {
        Ok(record) => Redirect::to(&format!("/ui/destinations/{}", record.id)).into_response(),
        Err(error) => {
            let status = error.status;
            let mut page = render(
                "destination_new.html",
                context! { csrf => session.csrf, form => form.shown(), errors => field_errors(&error) },
            );
            *page.status_mut() = status;
            page
        }
    }
}

async fn destination_view_page(
    state: &AdminState,
    session: &Session,
    id: &str,
    errors: HashMap<String, String>,
    notice: Option<String>,
) -> Response {
    let record = match destinations::find(state, id).await {
        Ok(record) => record,
        Err(error) => return error.into_response(),
    };
    let (deliveries, dead_letters) = match (
        state.store.deliveries(&record.id, 50).await,
        state
            .store
            .dead_letters(
                &record.id,
                &DeadLetterFilter {
                    limit: Some(100),
                    ..DeadLetterFilter::default()
                },
            )
            .await,
    ) {
        (Ok(deliveries), Ok(dead_letters)) => (deliveries, dead_letters),
        (Err(error), _) | (_, Err(error)) => return AdminError::from(error).into_response(),
    };
    let destination = match destinations::view(state, record).await {
        Ok(view) => view,
        Err(error) => return error.into_response(),
    };
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let mut page = render(
        "destination.html",
        context! { csrf => session.csrf, destination, deliveries, dead_letters, errors, notice },
    );
    *page.status_mut() = status;
    page
}

#[derive(Deserialize, Default)]
struct DoneQuery {
    done: Option<String>,
    n: Option<u64>,
}

async fn destination_page(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<DoneQuery>,
) -> Response {
    // What the last form did, after its redirect.
    let notice = match query.done.as_deref() {
        Some("credentials") => Some("Credentials saved and accepted by Customer.io.".to_owned()),
        Some("replay") => Some(format!("{} dead letters sent again.", query.n.unwrap_or(0))),
        _ => None,
    };
    match require_session(&state, &headers) {
        Ok(session) => destination_view_page(&state, &session, &id, HashMap::new(), notice).await,
        Err(refused) => refused.into_response(),
    }
}

async fn update_credentials(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CustomerIoForm>,
) -> Response {
    let session = match require_form(&state, &headers, &form.csrf) {
        Ok(session) => session,
        Err(refused) => return refused.into_response(),
    };
    let change = UpdateDestination {
        config: Some(form.config()),
        ..UpdateDestination::default()
    };
    match destinations::update(&state, &id, change).await {
        // Post/redirect/get: a reload does not send the form again.
        Ok(record) => Redirect::to(&format!("/ui/destinations/{}?done=credentials", record.id))
            .into_response(),
        Err(error) => {
            destination_view_page(&state, &session, &id, field_errors(&error), None).await
        }
    }
}

async fn set_enabled(
    state: AdminState,
    headers: HeaderMap,
    id: String,
    csrf: String,
    enabled: bool,
) -> Response {
    let session = match require_form(&state, &headers, &csrf) {
        Ok(session) => session,
        Err(refused) => return refused.into_response(),
    };
    let change = UpdateDestination {
        enabled: Some(enabled),
        ..UpdateDestination::default()
    };
    match destinations::update(&state, &id, change).await {
        Ok(record) => Redirect::to(&format!("/ui/destinations/{}", record.id)).into_response(),
        Err(error) => {
            destination_view_page(&state, &session, &id, field_errors(&error), None).await
        }
    }
}

async fn enable(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    set_enabled(state, headers, id, form.csrf, true).await
}

async fn disable(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    set_enabled(state, headers, id, form.csrf, false).await
}

#[derive(Deserialize)]
struct DeleteForm {
    csrf: String,
    #[serde(default)]
    confirm: String,
}

async fn delete(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<DeleteForm>,
) -> Response {
    let session = match require_form(&state, &headers, &form.csrf) {
        Ok(session) => session,
        Err(refused) => return refused.into_response(),
    };
    let record = match destinations::find(&state, &id).await {
        Ok(record) => record,
        Err(error) => return error.into_response(),
    };
    if form.confirm.trim() != record.name {
        let errors = HashMap::from([(
            "confirm".to_owned(),
            format!(
                "Type the destination's name, {}, to delete it.",
                record.name
            ),
        )]);
        return destination_view_page(&state, &session, &id, errors, None).await;
    }
    match destinations::delete(&state, &id).await {
        Ok(()) => Redirect::to("/ui/destinations").into_response(),
        Err(error) => error.into_response(),
    }
}

#[derive(Deserialize)]
struct ReplayForm {
    csrf: String,
    /// One dead letter; all when absent.
    id: Option<i64>,
}

async fn replay(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ReplayForm>,
) -> Response {
    let session = match require_form(&state, &headers, &form.csrf) {
        Ok(session) => session,
        Err(refused) => return refused.into_response(),
    };
    let request = ReplayRequest {
        ids: form.id.map(|id| vec![id]),
        ..ReplayRequest::default()
    };
    match destinations::replay(&state, &id, request).await {
        Ok(n) => Redirect::to(&format!("/ui/destinations/{id}?done=replay&n={n}")).into_response(),
        Err(error) => {
            destination_view_page(&state, &session, &id, field_errors(&error), None).await
        }
    }
}

async fn asset(Path(file): Path<String>) -> Response {
    let (body, content_type): (&'static str, &str) = match file.as_str() {
        "htmx.min.js" => (
            include_str!("../assets/htmx.min.js"),
            "application/javascript; charset=utf-8",
        ),
        "app.js" => (
            include_str!("../assets/app.js"),
            "application/javascript; charset=utf-8",
        ),
        "style.css" => (
            include_str!("../assets/style.css"),
            "text/css; charset=utf-8",
        ),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles_and_the_sign_in_page_renders() {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            if let Err(error) = env.add_template(name, source) {
                panic!("{name}: {error:#}");
            }
        }
        let html = env
            .get_template("login.html")
            .and_then(|t| t.render(context! { error => "<b>x</b>" }))
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert!(!html.contains("<b>x"), "output is escaped: {html}");
        assert!(html.contains("&lt;b&gt;x"), "{html}");
    }
}
