//! The `migrate` and `admin` commands, run once by people or init containers.

use anyhow::{bail, Context as _};
use sqlx::Connection as _;

use crate::auth::{self, Role};
use crate::config::{AdminCommand, DatabaseArgs};
use crate::db::{self, tenants, Tx};

fn target(args: &DatabaseArgs) -> String {
    format!("PostgreSQL at {}:{}/{}", args.host, args.port, args.database)
}

async fn connect(args: &DatabaseArgs) -> anyhow::Result<sqlx::PgConnection> {
    sqlx::PgConnection::connect_with(&db::connect_options(args))
        .await
        .with_context(|| format!("connecting to {}", target(args)))
}

/// A transaction like the service's own, so the commands work through PgBouncer too.
async fn begin(args: &DatabaseArgs) -> anyhow::Result<Tx> {
    let pool = sqlx::pool::PoolOptions::new().max_connections(1).connect_lazy_with(db::connect_options(args));
    Tx::begin(&pool).await.with_context(|| format!("connecting to {}", target(args)))
}

/// Applies pending migrations (sqlx takes an advisory lock, so concurrent init containers wait).
pub async fn migrate(args: &DatabaseArgs) -> anyhow::Result<()> {
    let mut conn = connect(args).await?;
    db::MIGRATOR.run(&mut conn).await.context("applying migrations")?;
    tracing::info!(migrations = db::MIGRATOR.iter().count(), "database schema is current");
    Ok(())
}

/// Runs an admin command; prints the new key on stdout (and nothing else there).
pub async fn run(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::CreateTenant { name, key, database } => {
            let name = name.trim().to_owned();
            if name.is_empty() {
                bail!("--name must not be empty");
            }
            let supplied = key
                .map(|k| auth::parse_key(&k).map(|()| k))
                .transpose()
                .map_err(|e| anyhow::anyhow!("RISK_ADMIN_KEY: {e}"))?;
            let mut tx = begin(&database).await?;
            let Some(tenant) = tenants::create(&mut tx, &name).await? else { bail!("a tenant named {name:?} exists") };
            match supplied {
                Some(key) => {
                    let digest = auth::digest(&key);
                    tenants::add_key(&mut tx, tenant, Role::Admin, &digest, &auth::key_prefix(&key)).await?;
                    tx.commit().await?;
                    eprintln!("tenant {name} ({tenant}) created with the admin API key from RISK_ADMIN_KEY");
                }
                None => {
                    let key = add_key(&mut tx, tenant, Role::Admin).await?;
                    tx.commit().await?;
                    eprintln!("tenant {name} ({tenant}) created; its admin API key (shown once):");
                    println!("{key}");
                }
            }
        }
        AdminCommand::CreateKey { tenant, role, database } => {
            let mut tx = begin(&database).await?;
            let Some(id) = tenants::find(&mut tx, &tenant).await? else { bail!("no tenant named {tenant:?}") };
            let key = add_key(&mut tx, id, role).await?;
            tx.commit().await?;
            eprintln!("{} key for tenant {tenant} (shown once):", role.as_str());
            println!("{key}");
        }
    }
    Ok(())
}

async fn add_key(tx: &mut Tx, tenant: uuid::Uuid, role: Role) -> anyhow::Result<String> {
    let (key, digest) = auth::new_key();
    tenants::add_key(tx, tenant, role, &digest, &auth::key_prefix(&key)).await?;
    Ok(key)
}
