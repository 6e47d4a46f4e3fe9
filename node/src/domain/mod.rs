//! Center-local domain logic (pure: no IO, no axum).
