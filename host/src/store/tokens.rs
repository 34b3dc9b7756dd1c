//! SQL of `fluid_tokens`: API tokens, by the hash of each (never the token itself).

use super::{Db, query};

/// A token as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRow {
    /// Its id, which names it in listings and revocations.
    pub id: String,
    /// What its holder called it.
    pub name: String,
    /// The role it grants.
    pub role: String,
    /// SHA-256 of the token, hex.
    pub hash: String,
    /// When it was made (µs since the epoch).
    pub created_at: i64,
    /// When it was revoked, if it was: it no longer grants anything.
    pub revoked_at: Option<i64>,
}

pub(crate) async fn insert(conn: &mut Db, t: &TokenRow) -> Result<(), sqlx::Error> {
    query("INSERT INTO fluid_tokens (id, name, role, hash, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(t.id.as_str())
        .bind(t.name.as_str())
        .bind(t.role.as_str())
        .bind(t.hash.as_str())
        .bind(t.created_at)
        .execute(&mut *conn)
        .await
        .map(drop)
}

/// Every token, revoked ones too, oldest first.
pub(crate) async fn all(conn: &mut Db) -> Result<Vec<TokenRow>, sqlx::Error> {
    let rows = query("SELECT id, name, role, hash, created_at, revoked_at FROM fluid_tokens ORDER BY created_at, id")
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(TokenRow {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                role: r.try_get("role")?,
                hash: r.try_get("hash")?,
                created_at: r.try_get("created_at")?,
                revoked_at: r.try_get("revoked_at")?,
            })
        })
        .collect()
}

/// Revokes token `id`; false when there is no such token still valid.
pub(crate) async fn revoke(conn: &mut Db, id: &str, now: i64) -> Result<bool, sqlx::Error> {
    let n = query("UPDATE fluid_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
        .bind(id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(n == 1)
}
