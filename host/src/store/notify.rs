//! Wake-ups across hosts on PostgreSQL: every transaction that appends to the change feed
//! also runs `pg_notify('fluid', '')`, delivered at commit; each host LISTENs and, on a
//! notification, wakes its claim loop and its plugin deliveries. Polling stays as the
//! fallback (a lost connection, a missed notification), so a wake-up is only ever early.

use super::Store;
use sqlx::postgres::PgListener;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

impl Store {
    /// Calls `on_change` whenever another transaction (on any host) changed the feed.
    /// Does nothing where the dialect has no such channel (SQLite, where every writer is in
    /// this process).
    pub fn listen(&self, stop: CancellationToken, on_change: impl Fn() + Send + 'static) {
        let Some(channel) = self.backend.change_channel() else {
            return;
        };
        let url = self.url.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            loop {
                let connected = async {
                    let mut l = PgListener::connect(&url).await?;
                    l.listen(channel).await?;
                    Ok::<_, sqlx::Error>(l)
                };
                let mut listener = tokio::select! {
                    l = connected => match l {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::warn!(error = %e, "LISTEN failed; polling until it is back");
                            tokio::select! {
                                _ = tokio::time::sleep(backoff) => {}
                                _ = stop.cancelled() => return,
                            }
                            backoff = (backoff * 2).min(Duration::from_secs(10));
                            continue;
                        }
                    },
                    _ = stop.cancelled() => return,
                };
                backoff = Duration::from_millis(200);
                on_change(); // anything missed while not listening
                loop {
                    tokio::select! {
                        n = listener.recv() => match n {
                            Ok(_) => on_change(),
                            Err(e) => {
                                tracing::warn!(error = %e, "LISTEN connection lost");
                                break;
                            }
                        },
                        _ = stop.cancelled() => return,
                    }
                }
            }
        });
    }
}
