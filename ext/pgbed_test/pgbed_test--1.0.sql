/* ext/pgbed_test/pgbed_test--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION pgbed_test" to load this file. \quit

CREATE FUNCTION pgbed_test_register(name text, start_time text, restart_s int, flags text[], behaviour text)
RETURNS TABLE (slot int, generation bigint)
AS 'MODULE_PATHNAME', 'pgbed_test_register'
LANGUAGE C STRICT;

CREATE FUNCTION pgbed_test_status(slot int, generation bigint)
RETURNS TABLE (status text, pid int)
AS 'MODULE_PATHNAME', 'pgbed_test_status'
LANGUAGE C STRICT;

CREATE FUNCTION pgbed_test_wait_startup(slot int, generation bigint)
RETURNS TABLE (status text, pid int)
AS 'MODULE_PATHNAME', 'pgbed_test_wait_startup'
LANGUAGE C STRICT;

CREATE FUNCTION pgbed_test_wait_shutdown(slot int, generation bigint)
RETURNS TABLE (status text, pid int)
AS 'MODULE_PATHNAME', 'pgbed_test_wait_shutdown'
LANGUAGE C STRICT;

CREATE FUNCTION pgbed_test_terminate(slot int, generation bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'pgbed_test_terminate'
LANGUAGE C STRICT;
