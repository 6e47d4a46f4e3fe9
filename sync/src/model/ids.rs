//! Identifiers that cross the center/hub boundary. They live in `markaz-ids`, below both
//! this crate and `markaz-config`, so that a center id `check-config` accepts is, by
//! construction, one the node can sync under (issue #19.1: two grammars for one id let
//! `mazzeh-` pass the config check and then fail at run time).

pub use markaz_ids::*;
