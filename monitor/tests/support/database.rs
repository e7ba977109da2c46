//! A database of its own on the local PostgreSQL (127.0.0.1:5432, trust
//! auth), for a test that stores history there; dropped at the end.

use super::unique;

pub const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";

/// A database of its own on the local PostgreSQL, dropped at the end.
pub struct Database {
    name: String,
}

impl Database {
    pub fn create() -> Self {
        let name = unique("hb").replace('-', "_");
        admin().batch_execute(&format!("CREATE DATABASE {name}")).unwrap_or_else(|e| {
            panic!("cannot create a database on {POSTGRES} (is PostgreSQL running? scripts/test.sh starts it): {e:?}")
        });
        Self { name }
    }

    pub fn url(&self) -> String {
        format!("{POSTGRES}/{}", self.name)
    }
}

fn admin() -> postgres::Client {
    postgres::Client::connect(&format!("{POSTGRES}/test"), postgres::NoTls)
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {POSTGRES}/test: {e:?}"))
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = admin().batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}
