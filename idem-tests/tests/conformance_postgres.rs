//! The store conformance suite against PostgreSQL (`IDEM_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`). Each test migrates a schema of its own and drops
//! it afterwards.

use idem_tests::servers::PgFixture;

idem_tests::conformance_suite!(PgFixture::new());
