-- Schema v7 (lan): logins are limited per (username, client address) with a growing
-- delay (markaz_web::login), never for a username as a whole: an attacker's wrong
-- passwords from one terminal do not keep the real user out from another. The
-- technician or manager sees and clears these rows (GET/DELETE /api/v1/login-limits).
-- login_failures stays for the checks of one's own current password.
CREATE TABLE login_limits (
    username TEXT NOT NULL,
    address  TEXT NOT NULL,
    failures INTEGER NOT NULL,
    last_ms  INTEGER NOT NULL,
    PRIMARY KEY (username, address)
) WITHOUT ROWID;
DELETE FROM login_failures WHERE key LIKE 'addr:%';
