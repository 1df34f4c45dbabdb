//! The warehouse over the PostgreSQL wire protocol, so `psql`, BI tools
//! (Metabase, Grafana, DBeaver) and drivers connect without an adapter.
//!
//! The protocol and the `pg_catalog` tables clients probe on connect come
//! from `datafusion-postgres`; this module adds what makes it safe to open
//! to analysts: an API token as the password (only analysts and admins not
//! limited to teams get in), a read-only guard on every statement, the
//! configured row limit and timeout on every result, and an audit record of
//! every query. All connections share one session whose tables are
//! re-registered every [`REFRESH`], so new data appears without reconnects.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire;
use datafusion_postgres::{DfSessionService, Parser, QueryHook};
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, PgWireConnectionState, PgWireServerHandlers,
    PidSecretKeyGenerator, RandomPidSecretKeyGenerator, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use serde_json::json;
use tokio::net::TcpListener;

use crate::{Api, AuthMode, Error, Role, caller_for_secret};

mod guard;
pub use guard::CLIENT_SETTINGS;
use guard::guard;

/// How often the shared session picks up new table versions.
pub const REFRESH: Duration = Duration::from_secs(15);

/// The catalog name clients see (`current_database()`); tables live in its
/// `public` schema, as in the HTTP SQL endpoint.
const CATALOG: &str = "fathom";

/// Client metadata key holding who authenticated (for the audit log).
const ACTOR: &str = "fathom.actor";

/// Client metadata key holding the credential the connection signed in
/// with, checked again before every statement (so a revoked token or an
/// expired JWT ends its sessions). `SHOW` of `fathom.*` is refused.
const CREDENTIAL: &str = "fathom.credential";

/// Serves the PostgreSQL protocol on `listener` until `shutdown` completes.
pub async fn serve_postgres(
    api: Arc<Api>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let addr = listener.local_addr()?;
    if api.config.auth == AuthMode::None && !addr.ip().is_loopback() {
        return Err(Error::OpenWithoutAuth(addr));
    }
    let ctx = Arc::new(
        fathom_transforms::functions::analyst_session(&api.warehouse, api.config.query).await?,
    );
    setup_pg_catalog(&ctx, CATALOG, EmptyContextProvider)
        .map_err(|e| Error::Postgres(format!("cannot set up pg_catalog: {e}")))?;
    let hooks: Vec<Arc<dyn QueryHook>> = vec![
        Arc::new(SessionCleanup),
        Arc::new(CursorStatementHook),
        Arc::new(SetShowHook),
        Arc::new(TransactionStatementHook),
    ];
    let inner = Arc::new(DfSessionService::new_with_hooks(ctx.clone(), hooks));
    let handlers = Arc::new(Handlers {
        sql: Arc::new(GuardedSql {
            parser: Arc::new(GuardedParser {
                inner: inner.query_parser(),
                ctx: ctx.clone(),
                api: api.clone(),
            }),
            inner,
            ctx: ctx.clone(),
            api: api.clone(),
        }),
        login: Arc::new(TokenLogin {
            api: api.clone(),
            parameters: DefaultServerParameterProvider::default(),
            pids: RandomPidSecretKeyGenerator::default(),
        }),
    });

    let refresher = {
        let api = api.clone();
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(REFRESH);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                if let Err(e) = api.warehouse.register_tables(&ctx).await {
                    tracing::warn!(error = %e, "cannot refresh the PostgreSQL session's tables");
                }
            }
        })
    };
    // Connections are capped like HTTP's; a connection that does not
    // finish signing in is dropped by the protocol library after 60 s.
    let slots = Arc::new(tokio::sync::Semaphore::new(crate::serve::connection_cap()));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, "PostgreSQL connection refused: at the connection cap");
                        continue;
                    };
                    let handlers = handlers.clone();
                    tokio::spawn(async move {
                        if let Err(e) = pgwire::tokio::process_socket(socket, None, handlers).await {
                            tracing::debug!(%peer, error = %e, "PostgreSQL connection ended with an error");
                        }
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a PostgreSQL connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    refresher.abort();
    Ok(())
}

/// `DEALLOCATE` and `DISCARD`, which drivers and poolers send to clean up
/// a session. Nothing to do: statements prepared over the protocol are the
/// connection's own and go with it, and SQL `PREPARE` is refused. (Passed
/// on, the engine would read `DEALLOCATE ALL` as a statement named "all".)
struct SessionCleanup;

impl SessionCleanup {
    fn answer(statement: &Statement) -> Option<PgWireResult<Response>> {
        match statement {
            Statement::Deallocate { .. } => Some(Ok(Response::Execution(Tag::new("DEALLOCATE")))),
            Statement::Discard { .. } => Some(Ok(Response::Execution(Tag::new("DISCARD ALL")))),
            _ => None,
        }
    }
}

#[async_trait]
impl QueryHook for SessionCleanup {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        Self::answer(statement)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        Self::answer(statement).map(|_| {
            Ok(LogicalPlan::EmptyRelation(
                datafusion::logical_expr::EmptyRelation {
                    produce_one_row: false,
                    schema: Arc::new(datafusion::common::DFSchema::empty()),
                },
            ))
        })
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        Self::answer(statement)
    }
}

struct Handlers {
    sql: Arc<GuardedSql>,
    login: Arc<TokenLogin>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.sql.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.sql.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.login.clone()
    }
}

fn user_error(severity: &str, code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        severity.to_owned(),
        code.to_owned(),
        message.into(),
    )))
}

/// Password login where the password is an API token.
struct TokenLogin {
    api: Arc<Api>,
    parameters: DefaultServerParameterProvider,
    pids: RandomPidSecretKeyGenerator,
}

impl TokenLogin {
    async fn admit<C>(&self, client: &mut C, actor: String, credential: String) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        client.metadata_mut().insert(ACTOR.to_owned(), actor);
        client
            .metadata_mut()
            .insert(CREDENTIAL.to_owned(), credential);
        let (pid, secret_key) = self.pids.generate(client);
        client.set_pid_and_secret_key(pid, secret_key);
        finish_authentication(client, &self.parameters).await
    }
}

#[async_trait]
impl StartupHandler for TokenLogin {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                if self.api.config.auth == AuthMode::None {
                    return self.admit(client, "local".to_owned(), String::new()).await;
                }
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(
                        pgwire::messages::startup::Authentication::CleartextPassword,
                    ))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(password) => {
                let password = password.into_password()?;
                let address = client.socket_addr().ip();
                if let Err(wait) = self.api.guards.may_try(address) {
                    return Err(user_error(
                        "FATAL",
                        "53300",
                        format!(
                            "too many failed sign-ins from this address; retry in {} s",
                            wait.as_secs().max(1)
                        ),
                    ));
                }
                let secret = password.password.trim().to_owned();
                let caller = match caller_for_secret(&self.api, &secret).await {
                    Ok(caller) => caller,
                    Err(e) => {
                        self.api.guards.failed(address);
                        return Err(user_error(
                            "FATAL",
                            "28P01",
                            format!(
                                "password authentication failed: {} (the password is an API token from `fathom tokens create`)",
                                e.message
                            ),
                        ));
                    }
                };
                if !matches!(caller.role, Role::Analyst | Role::Admin) || !caller.teams.is_empty() {
                    return Err(user_error(
                        "FATAL",
                        "28000",
                        "SQL is for analysts and admins not limited to teams; this token may not connect",
                    ));
                }
                self.admit(client, caller.actor, secret).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// The query handlers of `datafusion-postgres`, behind the guard, the row
/// limit, the timeout and the audit log.
struct GuardedSql {
    inner: Arc<DfSessionService>,
    parser: Arc<GuardedParser>,
    ctx: Arc<SessionContext>,
    api: Arc<Api>,
}

fn actor(client: &impl ClientInfo) -> String {
    client
        .metadata()
        .get(ACTOR)
        .cloned()
        .unwrap_or_else(|| "unknown".to_owned())
}

fn timed_out(limit: Duration) -> PgWireError {
    user_error(
        "ERROR",
        "57014",
        format!(
            "canceling statement: it ran longer than the server's limit of {} s",
            limit.as_secs()
        ),
    )
}

/// Audits a statement that ended before it returned rows: refused,
/// failed, timed out, or turned away by a revoked credential.
async fn audit_outcome(api: &Api, actor: &str, sql: &str, outcome: &str, error: &PgWireError) {
    let detail = json!({
        "sql": crate::sql::audit_text(sql),
        "protocol": "postgres",
        "outcome": outcome,
        "error": error.to_string(),
    });
    if let Err(e) = api.state.audit(actor, "sql", None, &detail).await {
        tracing::warn!(error = %e, "cannot write the audit log");
    }
}

/// The outcome name of an error answered before any row.
fn outcome_of(error: &PgWireError) -> &'static str {
    match error {
        PgWireError::UserError(info) if info.code == "57014" => "timeout",
        PgWireError::UserError(info) if info.code == "53300" => "busy",
        PgWireError::UserError(info) if info.code.starts_with("28") => "revoked",
        PgWireError::UserError(info)
            if ["25006", "42501", "54001", "42601"].contains(&info.code.as_str()) =>
        {
            "refused"
        }
        _ => "error",
    }
}

/// Checks the connection's credential again (verified credentials are
/// remembered for 10 s, as over HTTP): a revoked token or expired JWT gets
/// a FATAL error, which closes the connection.
async fn recheck(api: &Api, client: &(impl ClientInfo + ?Sized)) -> PgWireResult<()> {
    if api.config.auth == AuthMode::None {
        return Ok(());
    }
    let secret = client
        .metadata()
        .get(CREDENTIAL)
        .cloned()
        .unwrap_or_default();
    let caller = caller_for_secret(api, &secret).await.map_err(|e| {
        user_error(
            "FATAL",
            "28000",
            format!(
                "this session's credential is no longer valid ({}); the connection is closed",
                e.message
            ),
        )
    })?;
    if !matches!(caller.role, Role::Analyst | Role::Admin) || !caller.teams.is_empty() {
        return Err(user_error(
            "FATAL",
            "28000",
            "this session's credential no longer allows SQL; the connection is closed",
        ));
    }
    Ok(())
}

/// A slot among the server's concurrent queries (shared with HTTP).
async fn slot(api: &Api) -> PgWireResult<Arc<tokio::sync::OwnedSemaphorePermit>> {
    api.query_slot()
        .await
        .map(Arc::new)
        .map_err(|e| user_error("ERROR", "53300", e.message))
}

impl GuardedSql {
    /// Wraps a result's rows: at most `row_limit` (one more is an error, not
    /// a silent truncation: the wire protocol has no way to say "partial"),
    /// the deadline, and the audit record once the rows end.
    fn watch(
        &self,
        response: Response,
        actor: String,
        sql: String,
        started: Instant,
        slot: Arc<tokio::sync::OwnedSemaphorePermit>,
    ) -> Response {
        let Response::Query(mut query) = response else {
            return response;
        };
        let limit = self.api.config.row_limit;
        let timeout = self.api.config.query_timeout;
        let deadline = tokio::time::Instant::from_std(started + timeout);
        let rows = std::mem::replace(&mut query.data_rows, Box::pin(futures::stream::empty()));
        let audit = Audit {
            api: self.api.clone(),
            actor,
            sql,
            started,
            _slot: slot,
        };
        let state = (rows, 0_usize, Some(audit));
        query.data_rows = Box::pin(futures::stream::unfold(
            state,
            move |(mut rows, count, audit)| async move {
                let audit = audit?;
                match tokio::time::timeout_at(deadline, rows.next()).await {
                    Err(_) => {
                        audit.finish(count, "timeout").await;
                        Some((Err(timed_out(timeout)), (rows, count, None)))
                    }
                    Ok(None) => {
                        audit.finish(count, "ok").await;
                        None
                    }
                    Ok(Some(Err(e))) => {
                        audit.finish(count, "error").await;
                        Some((Err(e), (rows, count, None)))
                    }
                    Ok(Some(Ok(_))) if count >= limit => {
                        audit.finish(count, "row_limit").await;
                        let error = user_error(
                            "ERROR",
                            "54000",
                            format!(
                                "the result has more than {limit} rows, the server's row limit; \
                                 aggregate, filter or add LIMIT"
                            ),
                        );
                        Some((Err(error), (rows, count, None)))
                    }
                    Ok(Some(Ok(row))) => Some((Ok(row), (rows, count + 1, Some(audit)))),
                }
            },
        ));
        Response::Query(query)
    }
}

/// What the audit record of one result needs.
struct Audit {
    api: Arc<Api>,
    actor: String,
    sql: String,
    started: Instant,
    /// The query's slot, freed when its rows end.
    _slot: Arc<tokio::sync::OwnedSemaphorePermit>,
}

impl Audit {
    async fn finish(self, rows: usize, outcome: &str) {
        let detail = json!({
            "sql": crate::sql::audit_text(&self.sql),
            "protocol": "postgres",
            "rows": rows,
            "milliseconds": self.started.elapsed().as_millis() as u64,
            "outcome": outcome,
        });
        if let Err(e) = self
            .api
            .state
            .audit(&self.actor, "sql", None, &detail)
            .await
        {
            tracing::warn!(error = %e, "cannot write the audit log");
        }
    }
}

#[async_trait]
impl SimpleQueryHandler for GuardedSql {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let actor = actor(client);
        let ready = async {
            recheck(&self.api, client).await?;
            guard(&self.ctx, query, self.api.config.query.bounds).await?;
            slot(&self.api).await
        };
        let slot = match ready.await {
            Ok(slot) => slot,
            Err(e) => {
                audit_outcome(&self.api, &actor, query, outcome_of(&e), &e).await;
                return Err(e);
            }
        };
        let started = Instant::now();
        let timeout = self.api.config.query_timeout;
        let responses = tokio::time::timeout(
            timeout,
            SimpleQueryHandler::do_query(&*self.inner, client, query),
        )
        .await
        .map_err(|_| timed_out(timeout))
        .and_then(|r| r);
        let responses = match responses {
            Ok(responses) => responses,
            Err(e) => {
                audit_outcome(&self.api, &actor, query, outcome_of(&e), &e).await;
                return Err(e);
            }
        };
        Ok(responses
            .into_iter()
            .map(|r| self.watch(r, actor.clone(), query.to_owned(), started, slot.clone()))
            .collect())
    }
}

type PgStatement = <DfSessionService as ExtendedQueryHandler>::Statement;

#[async_trait]
impl ExtendedQueryHandler for GuardedSql {
    type Statement = PgStatement;
    type QueryParser = GuardedParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let sql = portal.statement.statement.0.clone();
        let actor = actor(client);
        let ready = async {
            recheck(&self.api, client).await?;
            slot(&self.api).await
        };
        let slot = match ready.await {
            Ok(slot) => slot,
            Err(e) => {
                audit_outcome(&self.api, &actor, &sql, outcome_of(&e), &e).await;
                return Err(e);
            }
        };
        let started = Instant::now();
        let timeout = self.api.config.query_timeout;
        let response = tokio::time::timeout(
            timeout,
            ExtendedQueryHandler::do_query(&*self.inner, client, portal, max_rows),
        )
        .await
        .map_err(|_| timed_out(timeout))
        .and_then(|r| r);
        match response {
            Ok(response) => Ok(self.watch(response, actor, sql, started, slot)),
            Err(e) => {
                audit_outcome(&self.api, &actor, &sql, outcome_of(&e), &e).await;
                Err(e)
            }
        }
    }
}

/// The statement parser of the extended protocol, behind the guard (so a
/// refused statement never gets a prepared plan).
struct GuardedParser {
    inner: Arc<Parser>,
    ctx: Arc<SessionContext>,
    api: Arc<Api>,
}

#[async_trait]
impl QueryParser for GuardedParser {
    type Statement = PgStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let checked = async {
            recheck(&self.api, client).await?;
            guard(&self.ctx, sql, self.api.config.query.bounds).await
        };
        if let Err(e) = checked.await {
            audit_outcome(&self.api, &actor(client), sql, outcome_of(&e), &e).await;
            return Err(e);
        }
        self.inner.parse_sql(client, sql, types).await
    }

    fn get_parameter_types(&self, statement: &Self::Statement) -> PgWireResult<Vec<Type>> {
        self.inner.get_parameter_types(statement)
    }

    fn get_result_schema(
        &self,
        statement: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        self.inner.get_result_schema(statement, column_format)
    }
}
