//! A fresh PostgreSQL database per test, dropped afterwards, on the machine's server
//! (127.0.0.1:5432, user postgres, trust auth; `FLUID_TEST_PG` overrides the admin URL).

use std::process::Command;

/// The admin URL: a database the tests may connect to in order to create others.
pub fn admin_url() -> String {
    std::env::var("FLUID_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A database of its own for one test; dropped (with its connections) on drop.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        sqlx::any::install_default_drivers();
        let name = format!("fluid_t_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
        let admin = admin_url();
        let pool = sqlx::AnyPool::connect(&admin).await.unwrap_or_else(|e| panic!("PostgreSQL at {admin}: {e} (is it running?)"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&pool).await.expect("create test database");
        pool.close().await;
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or(admin);
        TestDb { url: format!("{base}/{name}"), name }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Synchronous on purpose: Drop cannot await, and the test's runtime may be gone.
        let _ = Command::new("psql").args([&admin_url(), "-qc", &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)]).output();
    }
}
