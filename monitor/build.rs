// The version line with the commit: see packaging/version.rs.
include!("../packaging/version.rs");
