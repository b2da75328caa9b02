//! Staff and roles at the edge: who a caller of the admin API is ([`Caller`]), the role each
//! route needs ([`required_role`], checked on the server for every admin and console route),
//! the staff routes (owners add, change and remove members), the audit log's route, and the
//! audit entry each change writes ([`audited`]). Passwords are hashed with argon2id on the
//! blocking pool; neither they nor their hashes leave the node in an answer or a log line.

use std::sync::{Arc, OnceLock};

use actix_web::http::Method;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::Deserialize;
use serde_json::{json, Value};

use super::body;
use crate::actors::store::{Staff, StaffOp};
use crate::error::ApiError;
use crate::http::errors::{actor_error, store_error};
use crate::ids::StoreId;
use crate::node::Node;
use crate::store::staff::{self as model, Role};

/// An authenticated caller of a store's admin API: the name the audit log shows and its role.
#[derive(Debug, Clone)]
pub struct Caller {
    pub actor: String,
    pub role: Role,
}

impl Caller {
    pub fn owner(actor: &str) -> Caller {
        Caller { actor: actor.to_string(), role: Role::Owner }
    }
}

/// The role a request to the store's admin API needs: reading needs a viewer; drafts, publish,
/// rollback, theme and blog need an editor; everything else (settings, products, feed,
/// domains, tokens, staff) an owner. `section` is the path's first segment after the store.
pub fn required_role(method: &Method, section: &str) -> Role {
    if matches!(*method, Method::GET | Method::HEAD) {
        return Role::Viewer;
    }
    match section {
        "pages" | "blocks" | "theme" | "posts" => Role::Editor,
        _ => Role::Owner,
    }
}

/// The path's segments after `/admin/api/v1/stores/{store}/`.
pub fn store_segments(req: &HttpRequest) -> Vec<String> {
    req.path().split('/').skip(6).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// Refuses a caller whose role is below what the request needs (403, the uniform body).
pub fn check_role(caller: &Caller, req: &HttpRequest) -> Result<(), ApiError> {
    let segments = store_segments(req);
    let needed = required_role(req.method(), segments.first().map(String::as_str).unwrap_or(""));
    if caller.role >= needed {
        return Ok(());
    }
    Err(ApiError::forbidden(format!("the {} role may not do this; it needs the {} role", caller.role.as_str(), needed.as_str()))
        .with_details(json!({"role": caller.role, "required": needed})))
}

pub async fn ask(node: &Arc<Node>, store: &StoreId, op: StaffOp) -> Result<Value, ApiError> {
    node.ask_store(store, Staff(op)).await.map_err(actor_error)?.map_err(store_error)
}

/// Writes an audit entry; a failure is logged, never turned into a failed answer (the change
/// it describes has committed).
pub async fn record(node: &Arc<Node>, store: &StoreId, actor: &str, action: &str, summary: String) {
    let op = StaffOp::Record { actor: actor.to_string(), action: action.to_string(), summary };
    if let Err(e) = ask(node, store, op).await {
        tracing::warn!(%store, action, error = %e.message, "audit entry not written");
    }
}

/// The audit entry for a successful change through the admin API: an action name and a short
/// summary, from the method and the path only (never the body: it may hold secrets).
pub fn describe(method: &Method, segments: &[String]) -> Option<(&'static str, String)> {
    let s = |i: usize| segments.get(i).map(String::as_str).unwrap_or("");
    let m = method.as_str();
    let found = match (s(0), segments.len(), m) {
        ("settings", 1, _) => ("settings.update", "changed the store settings".to_string()),
        ("theme", 1, _) => ("theme.update", "changed the theme".to_string()),
        ("products", 1, "POST") => ("products.upsert", "added or changed products".to_string()),
        ("products", 2, "PUT") => ("product.update", format!("changed product {}", s(1))),
        ("products", 2, "DELETE") => ("product.delete", format!("deleted product {}", s(1))),
        ("pages", 2, "PUT") => ("page.save", format!("saved page {}", s(1))),
        ("pages", 2, "DELETE") => ("page.delete", format!("deleted page {}", s(1))),
        ("pages", 3, "POST") if s(2) == "blocks" => ("block.add", format!("added a block to page {}", s(1))),
        ("pages", 4, "DELETE") => ("block.delete", format!("deleted block {} of page {}", s(3), s(1))),
        // A block's draft edits are not audited: the console saves them as the merchant types,
        // and they would push publishes out of the kept entries. Publishing is audited.
        ("pages", 4, _) => return None,
        ("pages", 3, "POST") if s(2) == "publish" => ("page.publish", format!("published page {}", s(1))),
        ("pages", 3, "POST") if s(2) == "rollback" => ("page.rollback", format!("rolled back page {}", s(1))),
        ("posts", 2, "PUT") => ("post.save", format!("saved blog post {}", s(1))),
        ("posts", 2, "DELETE") => ("post.delete", format!("deleted blog post {}", s(1))),
        ("domains", 1, "POST") => ("domain.add", "claimed a domain".to_string()),
        ("domains", 2, "DELETE") => ("domain.remove", format!("removed domain {}", s(1))),
        ("domains", 3, "POST") => ("domain.verify", format!("verified domain {}", s(1))),
        ("token", 2, "POST") => ("token.rotate", "rotated the admin token".to_string()),
        ("webhooks", 1, _) => ("webhooks.update", "changed the webhook settings".to_string()),
        ("backend", 1, _) => ("backend.update", "changed the orders backend".to_string()),
        ("sync", 1, _) => ("sync.update", "changed the upstream sync".to_string()),
        ("sync", 2, "POST") => ("sync.run", "started a catalog sync".to_string()),
        _ => return None,
    };
    Some(found)
}

/// Records the audit entry of a change that succeeded (reads and validations write none).
pub async fn audited(node: &Arc<Node>, store: &StoreId, caller: &Caller, req: &HttpRequest, res: &HttpResponse) {
    if matches!(*req.method(), Method::GET | Method::HEAD) || !res.status().is_success() {
        return;
    }
    if let Some((action, summary)) = describe(req.method(), &store_segments(req)) {
        record(node, store, &caller.actor, action, summary).await;
    }
}

// ---- passwords ----

fn hash_now(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| ApiError::internal(e.to_string()))
}

pub async fn hash_password(password: String) -> Result<String, ApiError> {
    web::block(move || hash_now(&password)).await.map_err(ApiError::internal)?
}

/// Whether `password` matches `hash`. Without a hash (no such member) it checks against a
/// stand-in, so an unknown name costs what a wrong password does.
pub async fn verify_password(password: String, hash: Option<String>) -> bool {
    static STAND_IN: OnceLock<String> = OnceLock::new();
    web::block(move || {
        let known = hash.is_some();
        let hash = match hash {
            Some(h) => h,
            None => STAND_IN.get_or_init(|| hash_now("a stand-in no password matches").unwrap_or_default()).clone(),
        };
        let Ok(parsed) = PasswordHash::new(&hash) else { return false };
        Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok() && known
    })
    .await
    .unwrap_or(false)
}

// ---- routes ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMember {
    name: String,
    role: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberChange {
    role: Option<String>,
    password: Option<String>,
}

fn invalid(message: String) -> ApiError {
    ApiError::bad_request("validation_failed", message)
}

fn parse<T: serde::de::DeserializeOwned>(req: &HttpRequest, bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_value(body::json(req, bytes)?).map_err(|e| invalid(e.to_string()))
}

/// `GET …/staff` — the members with their roles (never a hash).
pub async fn list(node: web::Data<Node>, req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let (node, store, _) = super::admin::authorize_store(node, &req, &path).await?;
    Ok(HttpResponse::Ok().json(ask(&node, &store, StaffOp::List).await?))
}

/// `POST …/staff` — `{"name", "role", "password"}` (owners).
pub async fn add(node: web::Data<Node>, req: HttpRequest, path: web::Path<String>, bytes: Bytes) -> Result<HttpResponse, ApiError> {
    let (node, store, caller) = super::admin::authorize_store(node, &req, &path).await?;
    let m: NewMember = parse(&req, &bytes)?;
    model::check_name(&m.name).map_err(invalid)?;
    let role = Role::parse(&m.role).map_err(invalid)?;
    model::check_password(&m.password).map_err(invalid)?;
    let password_hash = hash_password(m.password).await?;
    let body = ask(&node, &store, StaffOp::Add { name: m.name.clone(), role, password_hash, by: caller.actor.clone() }).await?;
    record(&node, &store, &caller.actor, "staff.add", format!("added {} as {}", m.name, role.as_str())).await;
    Ok(HttpResponse::Created().json(body))
}

fn member(raw: &str) -> Result<String, ApiError> {
    model::check_name(raw).map_err(|_| ApiError::not_found("no staff member by that name"))?;
    Ok(raw.to_string())
}

/// `PATCH …/staff/{name}` — `{"role"?, "password"?}` (owners); ends the member's sessions.
pub async fn update(
    node: web::Data<Node>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    bytes: Bytes,
) -> Result<HttpResponse, ApiError> {
    let (raw_store, raw_name) = path.into_inner();
    let (node, store, caller) = super::admin::authorize_store(node, &req, &raw_store).await?;
    let name = member(&raw_name)?;
    let change: MemberChange = parse(&req, &bytes)?;
    let role = change.role.as_deref().map(Role::parse).transpose().map_err(invalid)?;
    if role.is_none() && change.password.is_none() {
        return Err(invalid("nothing to change: send role and/or password".into()));
    }
    let password_hash = match change.password {
        Some(p) => {
            model::check_password(&p).map_err(invalid)?;
            Some(hash_password(p).await?)
        }
        None => None,
    };
    let changed_password = password_hash.is_some();
    let body = ask(&node, &store, StaffOp::Update { name: name.clone(), role, password_hash }).await?;
    let mut what = Vec::new();
    if let Some(r) = role {
        what.push(format!("role to {}", r.as_str()));
    }
    if changed_password {
        what.push("password".to_string());
    }
    record(&node, &store, &caller.actor, "staff.update", format!("changed {name}'s {}", what.join(" and "))).await;
    Ok(HttpResponse::Ok().json(body))
}

/// `DELETE …/staff/{name}` (owners) — the member is removed and their sessions end at once.
pub async fn remove(node: web::Data<Node>, req: HttpRequest, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    let (raw_store, raw_name) = path.into_inner();
    let (node, store, caller) = super::admin::authorize_store(node, &req, &raw_store).await?;
    let name = member(&raw_name)?;
    let body = ask(&node, &store, StaffOp::Remove(name.clone())).await?;
    record(&node, &store, &caller.actor, "staff.remove", format!("removed {name}")).await;
    Ok(HttpResponse::Ok().json(body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    before: Option<i64>,
    limit: Option<i64>,
}

/// `GET …/audit?before=<id>&limit=<1..200>` — entries newest first; `next` is the `before` of
/// the following page (null on the last).
pub async fn audit(
    node: web::Data<Node>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let (node, store, _) = super::admin::authorize_store(node, &req, &path).await?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad_request("invalid_query", "limit must be 1 to 200"));
    }
    Ok(HttpResponse::Ok().json(ask(&node, &store, StaffOp::Audit { before: query.before, limit }).await?))
}

pub fn routes(scope: actix_web::Scope) -> actix_web::Scope {
    let store = "/stores/{store}";
    scope
        .service(super::at(&format!("{store}/staff"), [super::get().to(list), web::post().to(add)]))
        .service(super::at(&format!("{store}/staff/{{name}}"), [web::patch().to(update), web::delete().to(remove)]))
        .service(super::at(&format!("{store}/audit"), [super::get().to(audit)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_per_route() {
        assert_eq!(required_role(&Method::GET, "staff"), Role::Viewer);
        assert_eq!(required_role(&Method::POST, "pages"), Role::Editor);
        assert_eq!(required_role(&Method::PUT, "theme"), Role::Editor);
        for owner in ["settings", "staff", "token", "domains", "webhooks", "sync", "backend", "products", "anything-new"] {
            assert_eq!(required_role(&Method::POST, owner), Role::Owner, "{owner}");
        }
    }

    #[test]
    fn audit_summaries_come_from_the_path() {
        let seg = |p: &str| p.split('/').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(describe(&Method::POST, &seg("pages/home/publish")).unwrap().0, "page.publish");
        assert_eq!(describe(&Method::POST, &seg("pages/home/rollback")).unwrap().1, "rolled back page home");
        assert!(describe(&Method::PATCH, &seg("pages/home/blocks/b1")).is_none(), "draft autosaves");
        assert_eq!(describe(&Method::DELETE, &seg("pages/home/blocks/b1")).unwrap().0, "block.delete");
        assert!(describe(&Method::POST, &seg("blocks/validate")).is_none());
    }
}
