"""node/pgcatalog.py: system views, pg_control functions and psql 15's catalog queries.

A fake session holds a real APSW heap (an initdb'd data directory: node.datadir.initdb ->
storage.bootstrap_heap), tables are created through node/sql's translate + execute, and the
answers are compared with what PostgreSQL 15.18 returned for the same schema. PSQL_CAPTURE holds
psql 15.18's query texts exactly as they reached PostgreSQL 15.18 (log_statement=all) together with
PostgreSQL's RowDescription (names, type OIDs) and its rows in text form.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from node import datadir, pgcatalog, storage, sysquery
from node import protocol as P
from node.guc import GucState
from node.ipc.shmem import COUNTER_SLOTS, ShmemSegment, ShmemSizes
from node.proc import KIND_ORDER, me
from node.sql import translate as T
from node.sql.catalog import Catalog
from node.sql.execute import execute
from node.states import BackendKind

SCHEMA_SQL = [
    "CREATE TABLE t (id serial PRIMARY KEY, name varchar(20) NOT NULL DEFAULT 'x', price numeric(10,2),"
    " n int DEFAULT 0, flag boolean DEFAULT true, created timestamptz, CONSTRAINT t_name_key UNIQUE (name))",
    "CREATE INDEX t_n_idx ON t (n)",
    "CREATE TABLE u (a int, b text)",
    "CREATE SCHEMA s",
    "CREATE TABLE s.w (k bigint PRIMARY KEY, v double precision CHECK (v > 0))",
]
PG_OIDS = {"16385": ("t", "public"), "16403": ("w", "s")}  # the tables' oids in the capture


class Capture(NamedTuple):
    command: str
    sql: str
    columns: list[tuple[str, int]]
    rows: list[tuple[str | None, ...]]


PSQL_CAPTURE: list[Capture] = [
    Capture(
        "\\dt",
        (
            'SELECT n.nspname as "Schema",\n'
            '\t  c.relname as "Name",\n'
            "\t  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized "
            "view' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 't' THEN 'TOAST table' WHEN 'f' "
            "THEN 'foreign table' WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN 'partitioned index' "
            'END as "Type",\n'
            '\t  pg_catalog.pg_get_userbyid(c.relowner) as "Owner"\n'
            "\tFROM pg_catalog.pg_class c\n"
            "\t     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n"
            "\t     LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam\n"
            "\tWHERE c.relkind IN ('r','p','')\n"
            "\t      AND n.nspname <> 'pg_catalog'\n"
            "\t      AND n.nspname !~ '^pg_toast'\n"
            "\t      AND n.nspname <> 'information_schema'\n"
            "\t  AND pg_catalog.pg_table_is_visible(c.oid)\n"
            "\tORDER BY 1,2;"
        ),
        [("Schema", 19), ("Name", 19), ("Type", 25), ("Owner", 19)],
        [("public", "t", "table", "postgres"), ("public", "u", "table", "postgres")],
    ),
    Capture(
        "\\d",
        (
            'SELECT n.nspname as "Schema",\n'
            '\t  c.relname as "Name",\n'
            "\t  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized "
            "view' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 't' THEN 'TOAST table' WHEN 'f' "
            "THEN 'foreign table' WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN 'partitioned index' "
            'END as "Type",\n'
            '\t  pg_catalog.pg_get_userbyid(c.relowner) as "Owner"\n'
            "\tFROM pg_catalog.pg_class c\n"
            "\t     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n"
            "\t     LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam\n"
            "\tWHERE c.relkind IN ('r','p','v','m','S','f','')\n"
            "\t      AND n.nspname <> 'pg_catalog'\n"
            "\t      AND n.nspname !~ '^pg_toast'\n"
            "\t      AND n.nspname <> 'information_schema'\n"
            "\t  AND pg_catalog.pg_table_is_visible(c.oid)\n"
            "\tORDER BY 1,2;"
        ),
        [("Schema", 19), ("Name", 19), ("Type", 25), ("Owner", 19)],
        [
            ("public", "t", "table", "postgres"),
            ("public", "t_id_seq", "sequence", "postgres"),
            ("public", "u", "table", "postgres"),
        ],
    ),
    Capture(
        "\\ds",
        (
            'SELECT n.nspname as "Schema",\n'
            '\t  c.relname as "Name",\n'
            "\t  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized "
            "view' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 't' THEN 'TOAST table' WHEN 'f' "
            "THEN 'foreign table' WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN 'partitioned index' "
            'END as "Type",\n'
            '\t  pg_catalog.pg_get_userbyid(c.relowner) as "Owner"\n'
            "\tFROM pg_catalog.pg_class c\n"
            "\t     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n"
            "\tWHERE c.relkind IN ('S','')\n"
            "\t      AND n.nspname <> 'pg_catalog'\n"
            "\t      AND n.nspname !~ '^pg_toast'\n"
            "\t      AND n.nspname <> 'information_schema'\n"
            "\t  AND pg_catalog.pg_table_is_visible(c.oid)\n"
            "\tORDER BY 1,2;"
        ),
        [("Schema", 19), ("Name", 19), ("Type", 25), ("Owner", 19)],
        [("public", "t_id_seq", "sequence", "postgres")],
    ),
    Capture(
        "\\dt s.*",
        (
            'SELECT n.nspname as "Schema",\n'
            '\t  c.relname as "Name",\n'
            "\t  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized "
            "view' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 't' THEN 'TOAST table' WHEN 'f' "
            "THEN 'foreign table' WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN 'partitioned index' "
            'END as "Type",\n'
            '\t  pg_catalog.pg_get_userbyid(c.relowner) as "Owner"\n'
            "\tFROM pg_catalog.pg_class c\n"
            "\t     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n"
            "\t     LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam\n"
            "\tWHERE c.relkind IN ('r','p','t','s','')\n"
            "\t  AND n.nspname OPERATOR(pg_catalog.~) '^(s)$' COLLATE pg_catalog.default\n"
            "\tORDER BY 1,2;"
        ),
        [("Schema", 19), ("Name", 19), ("Type", 25), ("Owner", 19)],
        [("s", "w", "table", "postgres")],
    ),
    Capture(
        "\\dt t*",
        (
            'SELECT n.nspname as "Schema",\n'
            '\t  c.relname as "Name",\n'
            "\t  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized "
            "view' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 't' THEN 'TOAST table' WHEN 'f' "
            "THEN 'foreign table' WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN 'partitioned index' "
            'END as "Type",\n'
            '\t  pg_catalog.pg_get_userbyid(c.relowner) as "Owner"\n'
            "\tFROM pg_catalog.pg_class c\n"
            "\t     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n"
            "\t     LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam\n"
            "\tWHERE c.relkind IN ('r','p','t','s','')\n"
            "\t  AND c.relname OPERATOR(pg_catalog.~) '^(t.*)$' COLLATE pg_catalog.default\n"
            "\t  AND pg_catalog.pg_table_is_visible(c.oid)\n"
            "\tORDER BY 1,2;"
        ),
        [("Schema", 19), ("Name", 19), ("Type", 25), ("Owner", 19)],
        [("public", "t", "table", "postgres")],
    ),
    Capture(
        "\\d t",
        (
            "SELECT c.oid,\n"
            "\t  n.nspname,\n"
            "\t  c.relname\n"
            "\tFROM pg_catalog.pg_class c\n"
            "\t     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n"
            "\tWHERE c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default\n"
            "\t  AND pg_catalog.pg_table_is_visible(c.oid)\n"
            "\tORDER BY 2, 3;"
        ),
        [("oid", 26), ("nspname", 19), ("relname", 19)],
        [("16385", "public", "t")],
    ),
    Capture(
        "\\d t",
        (
            "SELECT c.relchecks, c.relkind, c.relhasindex, c.relhasrules, c.relhastriggers, "
            "c.relrowsecurity, c.relforcerowsecurity, false AS relhasoids, c.relispartition, '', "
            "c.reltablespace, CASE WHEN c.reloftype = 0 THEN '' ELSE "
            "c.reloftype::pg_catalog.regtype::pg_catalog.text END, c.relpersistence, c.relreplident, "
            "am.amname\n"
            "\tFROM pg_catalog.pg_class c\n"
            "\t LEFT JOIN pg_catalog.pg_class tc ON (c.reltoastrelid = tc.oid)\n"
            "\tLEFT JOIN pg_catalog.pg_am am ON (c.relam = am.oid)\n"
            "\tWHERE c.oid = '16385';"
        ),
        [
            ("relchecks", 21),
            ("relkind", 18),
            ("relhasindex", 16),
            ("relhasrules", 16),
            ("relhastriggers", 16),
            ("relrowsecurity", 16),
            ("relforcerowsecurity", 16),
            ("relhasoids", 16),
            ("relispartition", 16),
            ("?column?", 25),
            ("reltablespace", 26),
            ("reloftype", 25),
            ("relpersistence", 18),
            ("relreplident", 18),
            ("amname", 19),
        ],
        [("0", "r", "t", "f", "f", "f", "f", "f", "f", "", "0", "", "p", "d", "heap")],
    ),
    Capture(
        "\\d t",
        (
            "SELECT a.attname,\n"
            "\t  pg_catalog.format_type(a.atttypid, a.atttypmod),\n"
            "\t  (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true)\n"
            "\t   FROM pg_catalog.pg_attrdef d\n"
            "\t   WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef),\n"
            "\t  a.attnotnull,\n"
            "\t  (SELECT c.collname FROM pg_catalog.pg_collation c, pg_catalog.pg_type t\n"
            "\t   WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND a.attcollation <> "
            "t.typcollation) AS attcollation,\n"
            "\t  a.attidentity,\n"
            "\t  a.attgenerated\n"
            "\tFROM pg_catalog.pg_attribute a\n"
            "\tWHERE a.attrelid = '16385' AND a.attnum > 0 AND NOT a.attisdropped\n"
            "\tORDER BY a.attnum;"
        ),
        [
            ("attname", 19),
            ("format_type", 25),
            ("pg_get_expr", 25),
            ("attnotnull", 16),
            ("attcollation", 19),
            ("attidentity", 18),
            ("attgenerated", 18),
        ],
        [
            ("id", "integer", "nextval('t_id_seq'::regclass)", "t", None, "", ""),
            ("name", "character varying(20)", "'x'::character varying", "t", None, "", ""),
            ("price", "numeric(10,2)", None, "f", None, "", ""),
            ("n", "integer", "0", "f", None, "", ""),
            ("flag", "boolean", "true", "f", None, "", ""),
            ("created", "timestamp with time zone", None, "f", None, "", ""),
        ],
    ),
    Capture(
        "\\d t",
        (
            "SELECT c2.relname, i.indisprimary, i.indisunique, i.indisclustered, i.indisvalid, "
            "pg_catalog.pg_get_indexdef(i.indexrelid, 0, true),\n"
            "\t  pg_catalog.pg_get_constraintdef(con.oid, true), contype, condeferrable, condeferred, "
            "i.indisreplident, c2.reltablespace\n"
            "\tFROM pg_catalog.pg_class c, pg_catalog.pg_class c2, pg_catalog.pg_index i\n"
            "\t  LEFT JOIN pg_catalog.pg_constraint con ON (conrelid = i.indrelid AND conindid = "
            "i.indexrelid AND contype IN ('p','u','x'))\n"
            "\tWHERE c.oid = '16385' AND c.oid = i.indrelid AND i.indexrelid = c2.oid\n"
            "\tORDER BY i.indisprimary DESC, c2.relname;"
        ),
        [
            ("relname", 19),
            ("indisprimary", 16),
            ("indisunique", 16),
            ("indisclustered", 16),
            ("indisvalid", 16),
            ("pg_get_indexdef", 25),
            ("pg_get_constraintdef", 25),
            ("contype", 18),
            ("condeferrable", 16),
            ("condeferred", 16),
            ("indisreplident", 16),
            ("reltablespace", 26),
        ],
        [
            (
                "t_pkey",
                "t",
                "t",
                "f",
                "t",
                "CREATE UNIQUE INDEX t_pkey ON t USING btree (id)",
                "PRIMARY KEY (id)",
                "p",
                "f",
                "f",
                "f",
                "0",
            ),
            (
                "t_n_idx",
                "f",
                "f",
                "f",
                "t",
                "CREATE INDEX t_n_idx ON t USING btree (n)",
                None,
                None,
                None,
                None,
                "f",
                "0",
            ),
            (
                "t_name_key",
                "f",
                "t",
                "f",
                "t",
                "CREATE UNIQUE INDEX t_name_key ON t USING btree (name)",
                "UNIQUE (name)",
                "u",
                "f",
                "f",
                "f",
                "0",
            ),
        ],
    ),
    Capture(
        "\\d t",
        (
            "SELECT pol.polname, pol.polpermissive,\n"
            "\t  CASE WHEN pol.polroles = '{0}' THEN NULL ELSE pg_catalog.array_to_string(array(select "
            "rolname from pg_catalog.pg_roles where oid = any (pol.polroles) order by 1),',') END,\n"
            "\t  pg_catalog.pg_get_expr(pol.polqual, pol.polrelid),\n"
            "\t  pg_catalog.pg_get_expr(pol.polwithcheck, pol.polrelid),\n"
            "\t  CASE pol.polcmd\n"
            "\t    WHEN 'r' THEN 'SELECT'\n"
            "\t    WHEN 'a' THEN 'INSERT'\n"
            "\t    WHEN 'w' THEN 'UPDATE'\n"
            "\t    WHEN 'd' THEN 'DELETE'\n"
            "\t    END AS cmd\n"
            "\tFROM pg_catalog.pg_policy pol\n"
            "\tWHERE pol.polrelid = '16385' ORDER BY 1;"
        ),
        [
            ("polname", 19),
            ("polpermissive", 16),
            ("array_to_string", 25),
            ("pg_get_expr", 25),
            ("pg_get_expr", 25),
            ("cmd", 25),
        ],
        [],
    ),
    Capture(
        "\\d t",
        (
            "SELECT oid, stxrelid::pg_catalog.regclass, "
            "stxnamespace::pg_catalog.regnamespace::pg_catalog.text AS nsp, stxname,\n"
            "\tpg_catalog.pg_get_statisticsobjdef_columns(oid) AS columns,\n"
            "\t  'd' = any(stxkind) AS ndist_enabled,\n"
            "\t  'f' = any(stxkind) AS deps_enabled,\n"
            "\t  'm' = any(stxkind) AS mcv_enabled,\n"
            "\tstxstattarget\n"
            "\tFROM pg_catalog.pg_statistic_ext\n"
            "\tWHERE stxrelid = '16385'\n"
            "\tORDER BY nsp, stxname;"
        ),
        [
            ("oid", 26),
            ("stxrelid", 2205),
            ("nsp", 25),
            ("stxname", 19),
            ("columns", 25),
            ("ndist_enabled", 16),
            ("deps_enabled", 16),
            ("mcv_enabled", 16),
            ("stxstattarget", 23),
        ],
        [],
    ),
    Capture(
        "\\d t",
        (
            "SELECT pubname\n"
            "\t     , NULL\n"
            "\t     , NULL\n"
            "\tFROM pg_catalog.pg_publication p\n"
            "\t     JOIN pg_catalog.pg_publication_namespace pn ON p.oid = pn.pnpubid\n"
            "\t     JOIN pg_catalog.pg_class pc ON pc.relnamespace = pn.pnnspid\n"
            "\tWHERE pc.oid ='16385' and pg_catalog.pg_relation_is_publishable('16385')\n"
            "\tUNION\n"
            "\tSELECT pubname\n"
            "\t     , pg_get_expr(pr.prqual, c.oid)\n"
            "\t     , (CASE WHEN pr.prattrs IS NOT NULL THEN\n"
            "\t         (SELECT string_agg(attname, ', ')\n"
            "\t           FROM pg_catalog.generate_series(0, "
            "pg_catalog.array_upper(pr.prattrs::pg_catalog.int2[], 1)) s,\n"
            "\t                pg_catalog.pg_attribute\n"
            "\t          WHERE attrelid = pr.prrelid AND attnum = prattrs[s])\n"
            "\t        ELSE NULL END) FROM pg_catalog.pg_publication p\n"
            "\t     JOIN pg_catalog.pg_publication_rel pr ON p.oid = pr.prpubid\n"
            "\t     JOIN pg_catalog.pg_class c ON c.oid = pr.prrelid\n"
            "\tWHERE pr.prrelid = '16385'\n"
            "\tUNION\n"
            "\tSELECT pubname\n"
            "\t     , NULL\n"
            "\t     , NULL\n"
            "\tFROM pg_catalog.pg_publication p\n"
            "\tWHERE p.puballtables AND pg_catalog.pg_relation_is_publishable('16385')\n"
            "\tORDER BY 1;"
        ),
        [("pubname", 19), ("?column?", 25), ("?column?", 25)],
        [],
    ),
    Capture(
        "\\d t",
        (
            "SELECT c.oid::pg_catalog.regclass\n"
            "\tFROM pg_catalog.pg_class c, pg_catalog.pg_inherits i\n"
            "\tWHERE c.oid = i.inhparent AND i.inhrelid = '16385'\n"
            "\t  AND c.relkind != 'p' AND c.relkind != 'I'\n"
            "\tORDER BY inhseqno;"
        ),
        [("oid", 2205)],
        [],
    ),
    Capture(
        "\\d t",
        (
            "SELECT c.oid::pg_catalog.regclass, c.relkind, inhdetachpending, "
            "pg_catalog.pg_get_expr(c.relpartbound, c.oid)\n"
            "\tFROM pg_catalog.pg_class c, pg_catalog.pg_inherits i\n"
            "\tWHERE c.oid = i.inhrelid AND i.inhparent = '16385'\n"
            "\tORDER BY pg_catalog.pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT', "
            "c.oid::pg_catalog.regclass::pg_catalog.text;"
        ),
        [("oid", 2205), ("relkind", 18), ("inhdetachpending", 16), ("pg_get_expr", 25)],
        [],
    ),
    Capture(
        "\\d s.w",
        (
            "SELECT c.oid,\n"
            "\t  n.nspname,\n"
            "\t  c.relname\n"
            "\tFROM pg_catalog.pg_class c\n"
            "\t     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n"
            "\tWHERE c.relname OPERATOR(pg_catalog.~) '^(w)$' COLLATE pg_catalog.default\n"
            "\t  AND n.nspname OPERATOR(pg_catalog.~) '^(s)$' COLLATE pg_catalog.default\n"
            "\tORDER BY 2, 3;"
        ),
        [("oid", 26), ("nspname", 19), ("relname", 19)],
        [("16403", "s", "w")],
    ),
    Capture(
        "\\d s.w",
        (
            "SELECT c.relchecks, c.relkind, c.relhasindex, c.relhasrules, c.relhastriggers, "
            "c.relrowsecurity, c.relforcerowsecurity, false AS relhasoids, c.relispartition, '', "
            "c.reltablespace, CASE WHEN c.reloftype = 0 THEN '' ELSE "
            "c.reloftype::pg_catalog.regtype::pg_catalog.text END, c.relpersistence, c.relreplident, "
            "am.amname\n"
            "\tFROM pg_catalog.pg_class c\n"
            "\t LEFT JOIN pg_catalog.pg_class tc ON (c.reltoastrelid = tc.oid)\n"
            "\tLEFT JOIN pg_catalog.pg_am am ON (c.relam = am.oid)\n"
            "\tWHERE c.oid = '16403';"
        ),
        [
            ("relchecks", 21),
            ("relkind", 18),
            ("relhasindex", 16),
            ("relhasrules", 16),
            ("relhastriggers", 16),
            ("relrowsecurity", 16),
            ("relforcerowsecurity", 16),
            ("relhasoids", 16),
            ("relispartition", 16),
            ("?column?", 25),
            ("reltablespace", 26),
            ("reloftype", 25),
            ("relpersistence", 18),
            ("relreplident", 18),
            ("amname", 19),
        ],
        [("1", "r", "t", "f", "f", "f", "f", "f", "f", "", "0", "", "p", "d", "heap")],
    ),
    Capture(
        "\\d s.w",
        (
            "SELECT a.attname,\n"
            "\t  pg_catalog.format_type(a.atttypid, a.atttypmod),\n"
            "\t  (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true)\n"
            "\t   FROM pg_catalog.pg_attrdef d\n"
            "\t   WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef),\n"
            "\t  a.attnotnull,\n"
            "\t  (SELECT c.collname FROM pg_catalog.pg_collation c, pg_catalog.pg_type t\n"
            "\t   WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND a.attcollation <> "
            "t.typcollation) AS attcollation,\n"
            "\t  a.attidentity,\n"
            "\t  a.attgenerated\n"
            "\tFROM pg_catalog.pg_attribute a\n"
            "\tWHERE a.attrelid = '16403' AND a.attnum > 0 AND NOT a.attisdropped\n"
            "\tORDER BY a.attnum;"
        ),
        [
            ("attname", 19),
            ("format_type", 25),
            ("pg_get_expr", 25),
            ("attnotnull", 16),
            ("attcollation", 19),
            ("attidentity", 18),
            ("attgenerated", 18),
        ],
        [("k", "bigint", None, "t", None, "", ""), ("v", "double precision", None, "f", None, "", "")],
    ),
    Capture(
        "\\d s.w",
        (
            "SELECT c2.relname, i.indisprimary, i.indisunique, i.indisclustered, i.indisvalid, "
            "pg_catalog.pg_get_indexdef(i.indexrelid, 0, true),\n"
            "\t  pg_catalog.pg_get_constraintdef(con.oid, true), contype, condeferrable, condeferred, "
            "i.indisreplident, c2.reltablespace\n"
            "\tFROM pg_catalog.pg_class c, pg_catalog.pg_class c2, pg_catalog.pg_index i\n"
            "\t  LEFT JOIN pg_catalog.pg_constraint con ON (conrelid = i.indrelid AND conindid = "
            "i.indexrelid AND contype IN ('p','u','x'))\n"
            "\tWHERE c.oid = '16403' AND c.oid = i.indrelid AND i.indexrelid = c2.oid\n"
            "\tORDER BY i.indisprimary DESC, c2.relname;"
        ),
        [
            ("relname", 19),
            ("indisprimary", 16),
            ("indisunique", 16),
            ("indisclustered", 16),
            ("indisvalid", 16),
            ("pg_get_indexdef", 25),
            ("pg_get_constraintdef", 25),
            ("contype", 18),
            ("condeferrable", 16),
            ("condeferred", 16),
            ("indisreplident", 16),
            ("reltablespace", 26),
        ],
        [
            (
                "w_pkey",
                "t",
                "t",
                "f",
                "t",
                "CREATE UNIQUE INDEX w_pkey ON s.w USING btree (k)",
                "PRIMARY KEY (k)",
                "p",
                "f",
                "f",
                "f",
                "0",
            ),
        ],
    ),
    Capture(
        "\\d s.w",
        (
            "SELECT r.conname, pg_catalog.pg_get_constraintdef(r.oid, true)\n"
            "\tFROM pg_catalog.pg_constraint r\n"
            "\tWHERE r.conrelid = '16403' AND r.contype = 'c'\n"
            "\tORDER BY 1;"
        ),
        [("conname", 19), ("pg_get_constraintdef", 25)],
        [("w_v_check", "CHECK (v > 0::double precision)")],
    ),
    Capture(
        "\\d s.w",
        (
            "SELECT pol.polname, pol.polpermissive,\n"
            "\t  CASE WHEN pol.polroles = '{0}' THEN NULL ELSE pg_catalog.array_to_string(array(select "
            "rolname from pg_catalog.pg_roles where oid = any (pol.polroles) order by 1),',') END,\n"
            "\t  pg_catalog.pg_get_expr(pol.polqual, pol.polrelid),\n"
            "\t  pg_catalog.pg_get_expr(pol.polwithcheck, pol.polrelid),\n"
            "\t  CASE pol.polcmd\n"
            "\t    WHEN 'r' THEN 'SELECT'\n"
            "\t    WHEN 'a' THEN 'INSERT'\n"
            "\t    WHEN 'w' THEN 'UPDATE'\n"
            "\t    WHEN 'd' THEN 'DELETE'\n"
            "\t    END AS cmd\n"
            "\tFROM pg_catalog.pg_policy pol\n"
            "\tWHERE pol.polrelid = '16403' ORDER BY 1;"
        ),
        [
            ("polname", 19),
            ("polpermissive", 16),
            ("array_to_string", 25),
            ("pg_get_expr", 25),
            ("pg_get_expr", 25),
            ("cmd", 25),
        ],
        [],
    ),
    Capture(
        "\\d s.w",
        (
            "SELECT oid, stxrelid::pg_catalog.regclass, "
            "stxnamespace::pg_catalog.regnamespace::pg_catalog.text AS nsp, stxname,\n"
            "\tpg_catalog.pg_get_statisticsobjdef_columns(oid) AS columns,\n"
            "\t  'd' = any(stxkind) AS ndist_enabled,\n"
            "\t  'f' = any(stxkind) AS deps_enabled,\n"
            "\t  'm' = any(stxkind) AS mcv_enabled,\n"
            "\tstxstattarget\n"
            "\tFROM pg_catalog.pg_statistic_ext\n"
            "\tWHERE stxrelid = '16403'\n"
            "\tORDER BY nsp, stxname;"
        ),
        [
            ("oid", 26),
            ("stxrelid", 2205),
            ("nsp", 25),
            ("stxname", 19),
            ("columns", 25),
            ("ndist_enabled", 16),
            ("deps_enabled", 16),
            ("mcv_enabled", 16),
            ("stxstattarget", 23),
        ],
        [],
    ),
    Capture(
        "\\d s.w",
        (
            "SELECT pubname\n"
            "\t     , NULL\n"
            "\t     , NULL\n"
            "\tFROM pg_catalog.pg_publication p\n"
            "\t     JOIN pg_catalog.pg_publication_namespace pn ON p.oid = pn.pnpubid\n"
            "\t     JOIN pg_catalog.pg_class pc ON pc.relnamespace = pn.pnnspid\n"
            "\tWHERE pc.oid ='16403' and pg_catalog.pg_relation_is_publishable('16403')\n"
            "\tUNION\n"
            "\tSELECT pubname\n"
            "\t     , pg_get_expr(pr.prqual, c.oid)\n"
            "\t     , (CASE WHEN pr.prattrs IS NOT NULL THEN\n"
            "\t         (SELECT string_agg(attname, ', ')\n"
            "\t           FROM pg_catalog.generate_series(0, "
            "pg_catalog.array_upper(pr.prattrs::pg_catalog.int2[], 1)) s,\n"
            "\t                pg_catalog.pg_attribute\n"
            "\t          WHERE attrelid = pr.prrelid AND attnum = prattrs[s])\n"
            "\t        ELSE NULL END) FROM pg_catalog.pg_publication p\n"
            "\t     JOIN pg_catalog.pg_publication_rel pr ON p.oid = pr.prpubid\n"
            "\t     JOIN pg_catalog.pg_class c ON c.oid = pr.prrelid\n"
            "\tWHERE pr.prrelid = '16403'\n"
            "\tUNION\n"
            "\tSELECT pubname\n"
            "\t     , NULL\n"
            "\t     , NULL\n"
            "\tFROM pg_catalog.pg_publication p\n"
            "\tWHERE p.puballtables AND pg_catalog.pg_relation_is_publishable('16403')\n"
            "\tORDER BY 1;"
        ),
        [("pubname", 19), ("?column?", 25), ("?column?", 25)],
        [],
    ),
    Capture(
        "\\d s.w",
        (
            "SELECT c.oid::pg_catalog.regclass\n"
            "\tFROM pg_catalog.pg_class c, pg_catalog.pg_inherits i\n"
            "\tWHERE c.oid = i.inhparent AND i.inhrelid = '16403'\n"
            "\t  AND c.relkind != 'p' AND c.relkind != 'I'\n"
            "\tORDER BY inhseqno;"
        ),
        [("oid", 2205)],
        [],
    ),
    Capture(
        "\\d s.w",
        (
            "SELECT c.oid::pg_catalog.regclass, c.relkind, inhdetachpending, "
            "pg_catalog.pg_get_expr(c.relpartbound, c.oid)\n"
            "\tFROM pg_catalog.pg_class c, pg_catalog.pg_inherits i\n"
            "\tWHERE c.oid = i.inhrelid AND i.inhparent = '16403'\n"
            "\tORDER BY pg_catalog.pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT', "
            "c.oid::pg_catalog.regclass::pg_catalog.text;"
        ),
        [("oid", 2205), ("relkind", 18), ("inhdetachpending", 16), ("pg_get_expr", 25)],
        [],
    ),
    Capture(
        "\\d nosuch",
        (
            "SELECT c.oid,\n"
            "\t  n.nspname,\n"
            "\t  c.relname\n"
            "\tFROM pg_catalog.pg_class c\n"
            "\t     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n"
            "\tWHERE c.relname OPERATOR(pg_catalog.~) '^(nosuch)$' COLLATE pg_catalog.default\n"
            "\t  AND pg_catalog.pg_table_is_visible(c.oid)\n"
            "\tORDER BY 2, 3;"
        ),
        [("oid", 26), ("nspname", 19), ("relname", 19)],
        [],
    ),
    Capture(
        "\\d t*",
        (
            "SELECT c.oid,\n"
            "\t  n.nspname,\n"
            "\t  c.relname\n"
            "\tFROM pg_catalog.pg_class c\n"
            "\t     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n"
            "\tWHERE c.relname OPERATOR(pg_catalog.~) '^(t.*)$' COLLATE pg_catalog.default\n"
            "\t  AND pg_catalog.pg_table_is_visible(c.oid)\n"
            "\tORDER BY 2, 3;"
        ),
        [("oid", 26), ("nspname", 19), ("relname", 19)],
        [
            ("16385", "public", "t"),
            ("16384", "public", "t_id_seq"),
            ("16396", "public", "t_n_idx"),
            ("16394", "public", "t_name_key"),
            ("16392", "public", "t_pkey"),
        ],
    ),
    Capture(
        "\\l",
        (
            'SELECT d.datname as "Name",\n'
            '\t       pg_catalog.pg_get_userbyid(d.datdba) as "Owner",\n'
            '\t       pg_catalog.pg_encoding_to_char(d.encoding) as "Encoding",\n'
            '\t       d.datcollate as "Collate",\n'
            '\t       d.datctype as "Ctype",\n'
            '\t       d.daticulocale as "ICU Locale",\n'
            "\t       CASE d.datlocprovider WHEN 'c' THEN 'libc' WHEN 'i' THEN 'icu' END AS \"Locale "
            'Provider",\n'
            "\t       pg_catalog.array_to_string(d.datacl, E'\\n') AS \"Access privileges\"\n"
            "\tFROM pg_catalog.pg_database d\n"
            "\tORDER BY 1;"
        ),
        [
            ("Name", 19),
            ("Owner", 19),
            ("Encoding", 19),
            ("Collate", 25),
            ("Ctype", 25),
            ("ICU Locale", 25),
            ("Locale Provider", 25),
            ("Access privileges", 25),
        ],
        [("postgres", "postgres", "UTF8", "C.UTF-8", "C.UTF-8", None, "libc", None)],
    ),
    Capture(
        "\\dn",
        (
            'SELECT n.nspname AS "Name",\n'
            '\t  pg_catalog.pg_get_userbyid(n.nspowner) AS "Owner"\n'
            "\tFROM pg_catalog.pg_namespace n\n"
            "\tWHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'\n"
            "\tORDER BY 1;"
        ),
        [("Name", 19), ("Owner", 19)],
        [("public", "pg_database_owner"), ("s", "postgres")],
    ),
    Capture(
        "\\du",
        (
            "SELECT r.rolname, r.rolsuper, r.rolinherit,\n"
            "\t  r.rolcreaterole, r.rolcreatedb, r.rolcanlogin,\n"
            "\t  r.rolconnlimit, r.rolvaliduntil,\n"
            "\t  ARRAY(SELECT b.rolname\n"
            "\t        FROM pg_catalog.pg_auth_members m\n"
            "\t        JOIN pg_catalog.pg_roles b ON (m.roleid = b.oid)\n"
            "\t        WHERE m.member = r.oid) as memberof\n"
            "\t, r.rolreplication\n"
            "\t, r.rolbypassrls\n"
            "\tFROM pg_catalog.pg_roles r\n"
            "\tWHERE r.rolname !~ '^pg_'\n"
            "\tORDER BY 1;"
        ),
        [
            ("rolname", 19),
            ("rolsuper", 16),
            ("rolinherit", 16),
            ("rolcreaterole", 16),
            ("rolcreatedb", 16),
            ("rolcanlogin", 16),
            ("rolconnlimit", 23),
            ("rolvaliduntil", 1184),
            ("memberof", 1003),
            ("rolreplication", 16),
            ("rolbypassrls", 16),
        ],
        [("postgres", "t", "t", "t", "t", "t", "-1", None, "{}", "t", "t")],
    ),
]

# A psql 15 query that is NOT answered (\dt+ has more columns): it must fall through.
DT_PLUS = (
    "SELECT n.nspname as \"Schema\",\n\t  c.relname as \"Name\",\n\t  CASE c.relkind WHEN 'r' THEN 'table' WHEN "
    "'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 't' "
    "THEN 'TOAST table' WHEN 'f' THEN 'foreign table' WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN "
    '\'partitioned index\' END as "Type",\n\t  pg_catalog.pg_get_userbyid(c.relowner) as "Owner",\n\t  CASE '
    "c.relpersistence WHEN 'p' THEN 'permanent' WHEN 't' THEN 'temporary' WHEN 'u' THEN 'unlogged' END as "
    '"Persistence",\n\t  am.amname as "Access method",\n\t  pg_catalog.pg_size_pretty(pg_catalog.pg_table_size('
    'c.oid)) as "Size",\n\t  pg_catalog.obj_description(c.oid, \'pg_class\') as "Description"\n\tFROM '
    "pg_catalog.pg_class c\n\t     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n\t     LEFT "
    "JOIN pg_catalog.pg_am am ON am.oid = c.relam\n\tWHERE c.relkind IN ('r','p','')\n\t      AND n.nspname <> "
    "'pg_catalog'\n\t      AND n.nspname !~ '^pg_toast'\n\t      AND n.nspname <> 'information_schema'\n\t  AND "
    "pg_catalog.pg_table_is_visible(c.oid)\n\tORDER BY 1,2;"
)


def _cap(command: str, index: int = 0) -> Capture:
    return [c for c in PSQL_CAPTURE if c.command == command][index]


# -- the fake session ------------------------------------------------------------------------------


class FakeHeap:
    def __init__(self, conn: Any) -> None:
        self.conn = conn


class FakeSqlSession:
    def __init__(self, conn: Any) -> None:
        self.heap = FakeHeap(conn)
        self.catalog = Catalog(conn)
        self.path = ["postgres", "public"]

    def search_path(self) -> list[str]:
        return list(self.path)


class FakeSession:
    def __init__(self, data: Path) -> None:
        self.datadir = str(data)
        self.conn = storage.connect(data)
        self.sql = FakeSqlSession(self.conn)
        self.guc = GucState()
        self.user = "postgres"
        self.database = "postgres"

    def sql_session(self) -> FakeSqlSession:
        return self.sql

    def run(self, sql: str) -> None:
        plan = T.translate(sql, self.sql.catalog, ["public"])
        with self.conn:
            execute(self.conn, self.sql.catalog, plan, [])

    def oid(self, name: str, schema: str = "public") -> int:
        """The oid psql's `\\d schema.name` lookup finds."""
        lookup = _cap("\\d s.w").sql.replace("^(w)$", f"^({re.escape(name)})$").replace("^(s)$", f"^({schema})$")
        got = sysquery_rows(self, lookup)
        assert len(got) == 1, got
        return int(got[0][0])


def sysquery_rows(s: FakeSession, sql: str) -> list[list[Any]]:
    res = pgcatalog.intercept(sql, s)
    assert res is not None, sql
    return res.rows


@pytest.fixture
def sess(tmp_path: Path) -> FakeSession:
    data = tmp_path / "data"
    datadir.initdb(data)
    s = FakeSession(data)
    for sql in SCHEMA_SQL:
        s.run(sql)
    return s


def _text(v: Any, oid: int) -> str | None:
    return None if v is None else P.encode_text(v, oid).decode()


def _with_our_oids(sess: FakeSession, sql: str) -> str:
    for pg_oid, (name, schema) in PG_OIDS.items():
        sql = sql.replace(f"'{pg_oid}'", f"'{sess.oid(name, schema)}'")
    return sql


# -- psql's queries ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cap", PSQL_CAPTURE, ids=lambda c: f"{c.command}:{c.sql[:40]}")
def test_recorded_psql_query_is_answered_with_postgres_shape(sess: FakeSession, cap: Capture) -> None:
    res = pgcatalog.intercept(_with_our_oids(sess, cap.sql), sess)
    assert res is not None, f"{cap.command} not recognised"
    assert [(c.name, c.type_oid) for c in res.columns] == cap.columns
    assert [c.typlen for c in res.columns] == [P.TYPE_LEN.get(t, -1) if t != 1003 else -1 for _, t in cap.columns]
    assert res.tag == f"SELECT {len(res.rows)}"


# Where pgbed's answer differs from PostgreSQL's on purpose (see node/pgcatalog.py's docstring).
KNOWN_DIFF = {
    ("\\d s.w", 4): "CHECK constraints are shown in the SQLite spelling pgbed stored",
    ("\\d t*", 0): "\\d NAME finds tables only (PostgreSQL also returns the sequence and the indexes)",
}


def _expected(sess: FakeSession, cap: Capture) -> list[tuple[str | None, ...]]:
    ours = {pg: str(sess.oid(name, schema)) for pg, (name, schema) in PG_OIDS.items()}
    first_is_oid = cap.columns[0][0] == "oid"
    return [tuple(ours.get(v, v) if v is not None and i == 0 and first_is_oid else v for i, v in enumerate(r))
            for r in cap.rows]  # fmt: skip


@pytest.mark.parametrize("idx", range(len(PSQL_CAPTURE)))
def test_recorded_psql_query_answers_like_postgres(sess: FakeSession, idx: int) -> None:
    cap = PSQL_CAPTURE[idx]
    nth = [c for c in PSQL_CAPTURE[: idx + 1] if c.command == cap.command]
    key = (cap.command, len(nth) - 1)
    res = pgcatalog.intercept(_with_our_oids(sess, cap.sql), sess)
    assert res is not None
    got = [tuple(_text(v, c.type_oid) for v, c in zip(r, res.columns, strict=True)) for r in res.rows]
    expected = _expected(sess, cap)
    if key == ("\\d s.w", 4):
        assert got == [("w_v_check", "CHECK (v > 0)")]
        assert expected == [("w_v_check", "CHECK (v > 0::double precision)")]
    elif key == ("\\d t*", 0):
        assert got == [r for r in expected if r[2] == "t"]
        assert len(expected) > len(got)
    else:
        assert key not in KNOWN_DIFF
        assert got == expected


def test_describe_stops_at_unknown_names_and_non_tables(sess: FakeSession) -> None:
    lookup = _cap("\\d nosuch").sql
    assert sysquery_rows(sess, lookup) == []
    assert sysquery_rows(sess, lookup.replace("^(nosuch)$", "^(t_id_seq)$")) == []
    assert sysquery_rows(sess, lookup.replace("^(nosuch)$", "^(t)$")) == [[sess.oid("t"), "public", "t"]]
    flags = _cap("\\d t", 1).sql
    assert sysquery_rows(sess, flags.replace("16385", "99999")) == []  # psql: "Did not find any relation with OID"


def test_search_path_decides_visibility(sess: FakeSession) -> None:
    dt = _cap("\\dt").sql
    sess.run("CREATE TABLE s.t (z int)")  # hidden behind public.t
    assert [r[:2] for r in sysquery_rows(sess, dt)] == [["public", "t"], ["public", "u"]]
    sess.sql.path = ["s", "public"]
    assert [r[:2] for r in sysquery_rows(sess, dt)] == [["public", "u"], ["s", "t"], ["s", "w"]]
    sess.sql.path = ["public"]
    assert sysquery_rows(sess, _cap("\\dt s.*").sql) == [["s", "t", "table", "postgres"], ["s", "w", "table",
                                                                                           "postgres"]]  # fmt: skip


def test_relkind_literals_select_the_kinds(sess: FakeSession) -> None:
    d = _cap("\\d").sql
    only_seq = d.replace("IN ('r','p','v','m','S','f','')", "IN ('S','')")
    assert only_seq != d
    assert sysquery_rows(sess, only_seq) == [["public", "t_id_seq", "sequence", "postgres"]]


def test_whitespace_case_and_literals_do_not_matter(sess: FakeSession) -> None:
    q = _cap("\\dt").sql
    squeezed = " ".join(q.split()).replace("SELECT", "select").replace("FROM", "from").rstrip(";")
    res = pgcatalog.intercept(squeezed, sess)
    assert res is not None and [r[1] for r in res.rows] == ["t", "u"]
    toks, vals = pgcatalog.fingerprint("SELECT  a,'x''y' FROM T\n WHERE b = 10 AND c = E'\\n';")
    assert toks == ["select", "a", ",", "?", "from", "t", "where", "b", "=", "?", "and", "c", "=", "?"]
    assert [v for v in vals if v is not None] == ["x'y", "\n"]


@pytest.mark.parametrize("sql", [
    "SELECT 1",
    "SELECT relname FROM pg_catalog.pg_class",
    DT_PLUS,
    _cap("\\dt").sql.replace("LEFT JOIN pg_catalog.pg_namespace", "JOIN pg_catalog.pg_namespace"),
    _cap("\\d t", 2).sql.replace("a.attnotnull", "a.attnum"),
    _cap("\\du").sql.replace("WHERE r.rolname !~ '^pg_'", ""),
])  # fmt: skip
def test_other_sql_is_not_intercepted(sess: FakeSession, sql: str) -> None:
    assert pgcatalog.intercept(sql, sess) is None


def test_column_defaults_print_as_postgres_does(sess: FakeSession) -> None:
    sess.run(
        "CREATE TABLE dd (m int DEFAULT -1, tx text DEFAULT 'a''b', c3 timestamptz DEFAULT now(), f float8 DEFAULT 2.5,"
        " f2 float8 DEFAULT 2, d date DEFAULT '2020-01-01', b bool DEFAULT false, s2 bigserial, bi bigint DEFAULT 5,"
        " bn bigint DEFAULT -5, ch char(3) DEFAULT 'ab', j jsonb DEFAULT '{}', ts timestamp DEFAULT '2020-01-01 10:00',"
        " nn text DEFAULT NULL, u uuid DEFAULT 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', nu numeric DEFAULT 7)"
    )
    sess.run("CREATE TABLE s.q (id serial PRIMARY KEY)")
    cols = _cap("\\d t", 2).sql
    got = {r[0]: r[2] for r in sysquery_rows(sess, cols.replace("16385", str(sess.oid("dd"))))}
    assert got == {  # PostgreSQL 15's pg_get_expr for the same table
        "m": "'-1'::integer", "tx": "'a''b'::text", "c3": "now()", "f": "2.5", "f2": "2", "d": "'2020-01-01'::date",
        "b": "false", "s2": "nextval('dd_s2_seq'::regclass)", "bi": "5", "bn": "'-5'::integer",
        "ch": "'ab'::bpchar", "j": "'{}'::jsonb", "ts": "'2020-01-01 10:00:00'::timestamp without time zone",
        "nn": None, "u": "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid", "nu": "7",
    }  # fmt: skip
    lookup = _cap("\\d s.w").sql.replace("^(w)$", "^(q)$")
    ((q_oid, _, _),) = sysquery_rows(sess, lookup)
    (row,) = sysquery_rows(sess, cols.replace("16385", str(q_oid)))
    assert row[2] == "nextval('s.q_id_seq'::regclass)"  # qualified: s is not on search_path


def test_indexes_section_as_postgres_prints_it(sess: FakeSession) -> None:
    sess.run("CREATE TABLE dd (m int, tx text)")
    sess.run("CREATE UNIQUE INDEX dd_u ON dd (m)")
    sess.run("CREATE INDEX dd_x ON dd (m DESC, tx)")
    sess.run('CREATE TABLE "Mixed Case" ("Col A" int PRIMARY KEY, "select" int)')
    idx = _cap("\\d t", 3).sql
    flags = _cap("\\d t", 1).sql
    dd = str(sess.oid("dd"))
    assert [(r[0], r[1], r[2], r[5], r[6], r[7]) for r in sysquery_rows(sess, idx.replace("16385", dd))] == [
        ("dd_u", False, True, "CREATE UNIQUE INDEX dd_u ON dd USING btree (m)", None, None),
        ("dd_x", False, False, "CREATE INDEX dd_x ON dd USING btree (m DESC, tx)", None, None),
    ]
    assert sysquery_rows(sess, flags.replace("16385", dd))[0][:3] == [0, "r", True]
    mixed = str(sess.oid("Mixed Case"))
    assert [(r[0], r[5], r[6]) for r in sysquery_rows(sess, idx.replace("16385", mixed))] == [
        ("Mixed Case_pkey", 'CREATE UNIQUE INDEX "Mixed Case_pkey" ON "Mixed Case" USING btree ("Col A")',
         'PRIMARY KEY ("Col A")'),
    ]  # fmt: skip
    u = str(sess.oid("u"))
    assert sysquery_rows(sess, flags.replace("16385", u))[0][:3] == [0, "r", False]
    assert sysquery_rows(sess, idx.replace("16385", u)) == []


def _make_authid(sess: FakeSession) -> None:
    with sess.conn:
        sess.conn.execute("DROP TABLE pgbed_authid")
        sess.conn.execute("CREATE TABLE pgbed_authid (rolname TEXT, rolsuper INTEGER, rolcanlogin INTEGER,"
                          " rolpassword TEXT, rolvaliduntil TEXT)")  # fmt: skip
        sess.conn.execute("INSERT INTO pgbed_authid VALUES ('alice', 0, 1, 'secret-a', '2030-01-02 03:04:05+00'),"
                          " ('postgres', 1, 1, 'secret-p', NULL), ('reporting', 0, 0, 'secret-r', NULL)")  # fmt: skip


def test_roles_users_and_du(sess: FakeSession) -> None:
    assert [r["rolname"] for r in pgcatalog.role_rows(sess)] == ["postgres"]
    _make_authid(sess)
    roles = {r["rolname"]: r for r in pgcatalog.role_rows(sess)}
    assert list(roles) == ["postgres", "alice", "reporting"]
    assert roles["postgres"]["oid"] == 10 and roles["postgres"]["rolsuper"] is True
    assert roles["alice"]["rolsuper"] is False and roles["alice"]["oid"] >= 16384
    assert roles["alice"]["rolvaliduntil"] == dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert all(r["rolpassword"] == "********" for r in roles.values())
    res = sysquery.run_select("SELECT * FROM pg_roles", sess, [])
    assert not any("secret" in str(v) for row in res.rows for v in row)
    assert [r[0] for r in sysquery.run_select("SELECT usename FROM pg_user", sess, []).rows] == ["postgres", "alice"]
    du = sysquery_rows(sess, _cap("\\du").sql)
    assert [(r[0], r[1], r[5], r[8]) for r in du] == [("alice", False, True, "{}"), ("postgres", True, True, "{}"),
                                                       ("reporting", False, False, "{}")]  # fmt: skip


def test_dn_lists_created_schemas(sess: FakeSession) -> None:
    sess.run("CREATE SCHEMA app")
    assert sysquery_rows(sess, _cap("\\dn").sql) == [["app", "postgres"], ["public", "pg_database_owner"],
                                                     ["s", "postgres"]]  # fmt: skip


# -- views ---------------------------------------------------------------------------------------------


def _select(sess: FakeSession, sql: str) -> list[list[Any]]:
    return sysquery.run_select(sql, sess, []).rows


def test_pg_settings(sess: FakeSession) -> None:
    res = sysquery.run_select("SELECT * FROM pg_settings", sess, [])
    assert [c.name for c in res.columns] == [
        "name", "setting", "unit", "category", "short_desc", "extra_desc", "context", "vartype", "source", "min_val",
        "max_val", "enumvals", "boot_val", "reset_val", "sourcefile", "sourceline", "pending_restart",
    ]  # fmt: skip
    names = [r[0] for r in res.rows]
    assert "work_mem" in names and "is_superuser" not in names  # NO_SHOW_ALL, as in PostgreSQL
    q = ("SELECT setting, unit, vartype, enumvals, min_val, max_val, boot_val, reset_val, source, context "
         "FROM pg_settings WHERE name = $1")  # fmt: skip
    run = lambda name: sysquery.run_select(q, sess, [name]).rows  # noqa: E731
    assert run("work_mem") == [["4096", "kB", "integer", None, "64", "2147483647", "4096", "4096", "default", "user"]]
    assert run("shared_buffers")[0][:2] == ["16384", "8kB"]
    assert run("wal_level")[0][2:4] == ["enum", "{minimal,replica,logical}"]
    assert run("unix_socket_permissions")[0][0] == "0777" and run("unix_socket_permissions")[0][6] == "511"
    assert run("checkpoint_completion_target")[0][:1] + run("checkpoint_completion_target")[0][4:6] == ["0.9", "0", "1"]
    assert run("fsync")[0][:5] == ["on", None, "bool", None, None]
    sess.guc.set("work_mem", "8MB")
    assert run("work_mem")[0][0] == "8192" and run("work_mem")[0][7:9] == ["4096", "session"]


def test_pg_database(sess: FakeSession) -> None:
    res = sysquery.run_select("SELECT * FROM pg_database", sess, [])
    assert [(c.name, c.type_oid) for c in res.columns][:8] == [
        ("oid", P.OID), ("datname", P.NAME), ("datdba", P.OID), ("encoding", P.INT4), ("datlocprovider", P.CHAR),
        ("datistemplate", P.BOOL), ("datallowconn", P.BOOL), ("datconnlimit", P.INT4),
    ]  # fmt: skip
    assert [r[:8] for r in res.rows] == [[5, "postgres", 10, 6, "c", False, True, -1]]
    assert _select(sess, "SELECT datcollate, datctype FROM pg_database") == [["C.UTF-8", "C.UTF-8"]]


@pytest.fixture
def shm(monkeypatch: pytest.MonkeyPatch) -> Any:
    seg = ShmemSegment.create(ShmemSizes(n_procs=4), 1)
    monkeypatch.setattr(me, "shm", seg.s)
    yield seg.s
    seg.release()


def _proc(shm: Any, slot: int, pid: int, kind: BackendKind, datname: bytes) -> None:
    e = shm.procs[slot]
    e.pid, e.kind, e.datname, e.changecount = pid, KIND_ORDER.index(kind), datname, 2


def test_pg_stat_database(sess: FakeSession, shm: Any) -> None:
    _proc(shm, 0, 101, BackendKind.BACKEND, b"postgres")
    _proc(shm, 1, 102, BackendKind.BACKEND, b"postgres")
    _proc(shm, 2, 103, BackendKind.CHECKPOINTER, b"")
    pgcatalog.count_stat(pgcatalog.StatCounter.XACT_COMMIT, 7)
    pgcatalog.count_stat(pgcatalog.StatCounter.XACT_ROLLBACK)
    pgcatalog.count_stat(pgcatalog.StatCounter.TUP_INSERTED, 3)
    pgcatalog.count_stat(pgcatalog.StatCounter.SESSION_TIME_US, 2500)
    shm.counters[pgcatalog.StatCounter.STATS_RESET_US] = 1_700_000_000_000_000
    res = sysquery.run_select("SELECT * FROM pg_stat_database", sess, [])
    assert len(res.columns) == 28 and res.columns[-1].name == "stats_reset"
    rows = _select(sess, "SELECT datid, datname, numbackends, xact_commit, xact_rollback, tup_inserted, session_time,"
                         " stats_reset FROM pg_stat_database")  # fmt: skip
    assert rows == [
        [0, None, 0, 0, 0, 0, 0, None],
        [5, "postgres", 2, 7, 1, 3, 2.5, dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)],
    ]


def test_stat_counter_slots() -> None:
    slots = [int(c) for c in pgcatalog.StatCounter]
    assert len(set(slots)) == len(slots)
    assert min(slots) >= pgcatalog.STAT_COUNTER_BASE and max(slots) < COUNTER_SLOTS


def test_pg_control_views_and_functions(sess: FakeSession) -> None:
    cf = datadir.read_control(sess.datadir)
    sysrow = _select(sess, "SELECT * FROM pg_control_system()")[0]
    assert sysrow[:3] == [1300, 202209061, cf.system_identifier]
    assert sysrow[3] == dt.datetime.fromtimestamp(int(cf.time), dt.UTC)
    ck = sysquery.run_select("SELECT * FROM pg_control_checkpoint()", sess, [])
    assert [(c.name, c.type_oid) for c in ck.columns][:7] == [
        ("checkpoint_lsn", P.PG_LSN), ("redo_lsn", P.PG_LSN), ("redo_wal_file", P.TEXT), ("timeline_id", P.INT4),
        ("prev_timeline_id", P.INT4), ("full_page_writes", P.BOOL), ("next_xid", P.TEXT),
    ]  # fmt: skip
    row = dict(zip([c.name for c in ck.columns], ck.rows[0], strict=True))
    assert (row["checkpoint_lsn"], row["redo_lsn"]) == (cf.checkpoint_lsn, cf.redo_lsn)
    assert row["redo_wal_file"] == "00000001" + f"{cf.redo_lsn // cf.wal_segment_size // 256:08X}" + \
        f"{cf.redo_lsn // cf.wal_segment_size % 256:08X}"  # fmt: skip
    assert row["checkpoint_time"] == dt.datetime.fromtimestamp(int(cf.checkpoint_time), dt.UTC)
    assert sysquery.FUNCTIONS["pg_control_system"].rettype == pgcatalog.RECORD == 2249
    ((text,),) = _select(sess, "SELECT pg_control_system()")
    assert re.fullmatch(rf'\(1300,202209061,{cf.system_identifier},"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\+00"\)', text)
    ((text,),) = _select(sess, "SELECT pg_control_checkpoint()")
    assert text.startswith(f"({P.format_lsn(cf.checkpoint_lsn)},{P.format_lsn(cf.redo_lsn)},{row['redo_wal_file']},"
                           "1,1,t,0:")  # fmt: skip
    assert pgcatalog.routed_function_view("pg_control_system") is sysquery.VIEWS["pg_control_system"]
    assert pgcatalog.routed_function_view("pg_stat_activity") is None


def test_record_text_quotes_like_record_out() -> None:
    cols = [("a", P.INT4), ("b", P.TEXT), ("c", P.TEXT), ("d", P.TEXT)]
    assert pgcatalog.record_text(cols, {"a": 1, "b": "x y", "c": None, "d": 'q"(,)'}) == '(1,"x y",,"q""(,)")'
