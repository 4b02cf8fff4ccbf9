"""Every SQL statement of `PostgresStorage`, as named templates, and the schema migrations.

``{schema}`` in a template is replaced by the quoted schema name when the storage is built
(``psycopg.sql.SQL(template).format(schema=Identifier(name))``), ``{channel}`` in the
acquire and single-instance commit calls by the notify channel as a string literal (a
checked identifier);
nothing else is ever interpolated: values travel as parameters (``%s``, or ``%b`` in binary
format). The templates therefore contain no other braces.

Schema (version 6; see ``docs/postgres.md``; version 2 added commit guards to
``commit_writes``, version 3 the single-instance ``acquire_one`` and ``commit_one``, and the
``want:<id>`` notification of an ``acquire`` that finds a lease held, version 4 the index
entries and their counts, version 5 the feed, version 6 ``claim_due``'s separate instant
for lease expiry):

* ``records(instance_id, key, value bytea)`` — one row per record, primary key
  ``(instance_id, key)``.
* ``alarms(instance_id primary key, due_at timestamptz)`` and the index
  ``alarms_due(due_at, instance_id)`` — the narrow, hot table that ``claim_due`` scans.
* ``leases(instance_id primary key, owner, generation, expires_at)`` — narrow and hot too;
  released leases are deleted.
* ``generations`` — the sequence every lease grant draws its generation from.
* ``meta(key, value)`` — ``schema_version``.
* ``index_entries(instance_id, name, key)`` (primary key ``(instance_id, name)``), the index
  ``index_order(name, key, instance_id)`` that scans read, and ``index_counts(name, shard,
  n)`` — each index's size, kept by ``set_index`` in the commits.
* ``feed(id, seq, data bytea)`` — the event feed (see `_V5_FEED` for how its entries get
  their commit-ordered ``seq``), with the functions ``append_feed`` and ``sequence_feed``.
* Functions ``acquire`` (with its helper ``grant_leases``), ``claim_due`` and
  ``commit_writes`` — and ``acquire_one`` and ``commit_one``, the same for one instance
  without the arrays — that do one operation each in a single round trip (PL/pgSQL: each
  statement inside sees the rows committed before it started, which a single SQL statement
  could not: its snapshot predates the row locks it waits for).

Ids and keys are ``text COLLATE "C"``: they compare by code point, as Python strings do, and
``list_instances`` can use the primary keys for a prefix range.

The hot tables (alarms, leases) get ``fillfactor = 70`` (room for same-page updates; the
lease columns are not indexed, so lease renewals are HOT updates) and an autovacuum that
starts after 1 % of the rows are dead with no cost delay, instead of the default 20 % with
throttling: bulk claims and commits turn their rows over quickly.
"""

from __future__ import annotations

from typing import Final

from durable_effect.storage import _postgres_index_sql as ix

#: The version of the schema this library writes (``len(MIGRATIONS)``).
SCHEMA_VERSION: Final = 6

#: ``pg_advisory_xact_lock`` key held while migrating ("durable_" in ASCII).
MIGRATION_LOCK_ID: Final = 0x6475_7261_626C_655F

# -- migrations ------------------------------------------------------------------------------

CREATE_SCHEMA: Final = "CREATE SCHEMA IF NOT EXISTS {schema}"

CREATE_META: Final = """
CREATE TABLE IF NOT EXISTS {schema}.meta (
    key text COLLATE "C" PRIMARY KEY,
    value bigint NOT NULL
)"""

LOCK_MIGRATIONS: Final = "SELECT pg_advisory_xact_lock(%s)"

META_EXISTS: Final = """
SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = %s AND tablename = 'meta'"""

SELECT_VERSION: Final = "SELECT value FROM {schema}.meta WHERE key = 'schema_version'"

SET_VERSION: Final = """
INSERT INTO {schema}.meta (key, value) VALUES ('schema_version', %s)
ON CONFLICT (key) DO UPDATE SET value = excluded.value"""

_V1_TABLES: Final = (
    """
CREATE TABLE {schema}.records (
    instance_id text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (instance_id, key)
)""",
    """
CREATE TABLE {schema}.alarms (
    instance_id text COLLATE "C" PRIMARY KEY,
    due_at timestamptz NOT NULL
)""",
    "CREATE INDEX alarms_due ON {schema}.alarms (due_at, instance_id)",
    """
CREATE TABLE {schema}.leases (
    instance_id text COLLATE "C" PRIMARY KEY,
    owner text NOT NULL,
    generation bigint NOT NULL,
    expires_at timestamptz NOT NULL
)""",
    "CREATE SEQUENCE {schema}.generations AS bigint",
)

#: Storage options of the hot tables (checked by the tests through ``pg_class.reloptions``).
HOT_TABLE_OPTIONS: Final = (
    "fillfactor=70",
    "autovacuum_vacuum_scale_factor=0.01",
    "autovacuum_vacuum_threshold=100",
    "autovacuum_analyze_scale_factor=0.02",
    "autovacuum_vacuum_cost_delay=0",
)

_V1_TUNING: Final = (
    "ALTER TABLE {schema}.alarms SET (" + ", ".join(HOT_TABLE_OPTIONS) + ")",
    "ALTER TABLE {schema}.leases SET (" + ", ".join(HOT_TABLE_OPTIONS) + ")",
)

# Lock order, everywhere: alarm rows before lease rows, each in instance id order. A claim
# locks alarms then leases; a commit that moves alarms locks them before the leases; acquire,
# extend and release only touch leases (sorted). So no two operations wait on each other in
# a cycle.

_V1_GRANT: Final = """
CREATE FUNCTION {schema}.grant_leases(
    p_ids text[], p_owner text, p_now timestamptz, p_expires timestamptz
) RETURNS bigint
LANGUAGE sql AS $fn$
    WITH granted AS (
        INSERT INTO {schema}.leases AS l (instance_id, owner, generation, expires_at)
        SELECT g.id, p_owner, g.gen, p_expires
        FROM (
            -- Generations follow the order of p_ids (nextval runs after this sort)...
            SELECT u.id, nextval('{schema}.generations') AS gen
            FROM unnest(p_ids) WITH ORDINALITY AS u(id, n)
            ORDER BY u.n
        ) AS g
        ORDER BY g.id COLLATE "C"  -- ...while the rows are locked in id order.
        ON CONFLICT (instance_id) DO UPDATE
            SET owner = excluded.owner,
                generation = excluded.generation,
                expires_at = excluded.expires_at
            -- The latest version decides: a lease granted since the caller's read wins.
            WHERE l.expires_at <= p_now
        RETURNING 1
    )
    SELECT count(*) FROM granted
$fn$"""

_V1_ACQUIRE: Final = """
CREATE FUNCTION {schema}.acquire(
    p_ids text[], p_owner text, p_now timestamptz, p_expires timestamptz
) RETURNS TABLE (instance_id text, generation bigint, due_at timestamptz, key text, value bytea)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
BEGIN
    -- A plain read first: a live lease answers "held" without locking anything. (Locking
    -- the existing rows here would take them out of id order with the inserts below.)
    IF EXISTS (
        SELECT 1 FROM {schema}.leases AS l
        WHERE l.instance_id = ANY (p_ids) AND l.expires_at > p_now
    ) THEN
        RETURN;
    END IF;
    IF cardinality(p_ids) = 1 THEN
        -- One id: granted or not, never half-granted.
        IF {schema}.grant_leases(p_ids, p_owner, p_now, p_expires) = 0 THEN
            RETURN;
        END IF;
    ELSE
        -- Several: a grant made elsewhere since the read may leave ours partial. Undo it in
        -- a subtransaction (only this case pays for one).
        BEGIN
            IF {schema}.grant_leases(p_ids, p_owner, p_now, p_expires)
                    < cardinality(p_ids) THEN
                RAISE EXCEPTION 'partial grant' USING ERRCODE = 'DE001';
            END IF;
        EXCEPTION WHEN SQLSTATE 'DE001' THEN
            RETURN;
        END;
    END IF;
    -- A new statement, so a commit that held one of these leases until now is visible.
    RETURN QUERY
        SELECT l.instance_id, l.generation, a.due_at, r.key, r.value
        FROM {schema}.leases AS l
        LEFT JOIN {schema}.alarms AS a ON a.instance_id = l.instance_id
        LEFT JOIN {schema}.records AS r ON r.instance_id = l.instance_id
        WHERE l.instance_id = ANY (p_ids);
END
$fn$"""

_V1_CLAIM_DUE: Final = """
CREATE FUNCTION {schema}.claim_due(
    p_now timestamptz, p_owner text, p_expires timestamptz, p_limit integer
) RETURNS TABLE (instance_id text, generation bigint, due_at timestamptz, key text, value bytea)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    v_ids text[];
BEGIN
    WITH due AS (
        SELECT a.instance_id, a.due_at FROM {schema}.alarms AS a
        WHERE a.due_at <= p_now
          AND NOT EXISTS (
              SELECT 1 FROM {schema}.leases AS l
              WHERE l.instance_id = a.instance_id AND l.expires_at > p_now
          )
        ORDER BY a.due_at, a.instance_id
        LIMIT p_limit
        FOR UPDATE OF a SKIP LOCKED
    ), numbered AS (
        -- Generations in claim order (nextval runs after the sort)...
        SELECT d.instance_id, nextval('{schema}.generations') AS gen
        FROM due AS d
        ORDER BY d.due_at, d.instance_id
    ), granted AS (
        INSERT INTO {schema}.leases AS l (instance_id, owner, generation, expires_at)
        SELECT n.instance_id, p_owner, n.gen, p_expires
        FROM numbered AS n
        ORDER BY n.instance_id  -- ...while the lease rows are locked in id order.
        ON CONFLICT (instance_id) DO UPDATE
            SET owner = excluded.owner,
                generation = excluded.generation,
                expires_at = excluded.expires_at
            -- The latest version decides: a lease granted since this statement began wins.
            WHERE l.expires_at <= p_now
        RETURNING l.instance_id
    )
    SELECT array_agg(g.instance_id) INTO v_ids FROM granted AS g;
    IF v_ids IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
        SELECT l.instance_id, l.generation, a.due_at, r.key, r.value
        FROM {schema}.leases AS l
        JOIN {schema}.alarms AS a ON a.instance_id = l.instance_id
        LEFT JOIN {schema}.records AS r ON r.instance_id = l.instance_id
        WHERE l.instance_id = ANY (v_ids)
        ORDER BY a.due_at, l.instance_id, r.key;
END
$fn$"""

_V1_COMMIT: Final = """
CREATE FUNCTION {schema}.commit_writes(
    p_lease_ids text[], p_owners text[], p_generations bigint[],
    p_purge_ids text[],
    p_delete_ids text[], p_delete_keys text[],
    p_put_ids text[], p_put_keys text[], p_put_values bytea[],
    p_alarm_ids text[], p_alarm_ats timestamptz[],
    p_release boolean, p_channel text
) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    v_lost integer;
BEGIN
    -- Alarm rows first (a concurrent claim holds them while it waits for lease rows).
    PERFORM 1 FROM {schema}.alarms AS a
    WHERE a.instance_id = ANY (p_alarm_ids)
    ORDER BY a.instance_id
    FOR UPDATE;
    PERFORM 1 FROM {schema}.leases AS l
    WHERE l.instance_id = ANY (p_lease_ids)
    ORDER BY l.instance_id
    FOR UPDATE;
    SELECT f.n INTO v_lost
    FROM unnest(p_lease_ids, p_owners, p_generations) WITH ORDINALITY AS f(id, owner, gen, n)
    WHERE NOT EXISTS (
        SELECT 1 FROM {schema}.leases AS l
        WHERE l.instance_id = f.id AND l.owner = f.owner AND l.generation = f.gen
    )
    ORDER BY f.n
    LIMIT 1;
    IF v_lost IS NOT NULL THEN
        RETURN v_lost;  -- fenced: nothing written
    END IF;
    IF cardinality(p_purge_ids) > 0 THEN
        DELETE FROM {schema}.records AS r WHERE r.instance_id = ANY (p_purge_ids);
    END IF;
    IF cardinality(p_delete_ids) > 0 THEN
        DELETE FROM {schema}.records AS r
        USING unnest(p_delete_ids, p_delete_keys) AS d(id, key)
        WHERE r.instance_id = d.id AND r.key = d.key;
    END IF;
    IF cardinality(p_put_ids) > 0 THEN
        INSERT INTO {schema}.records AS r (instance_id, key, value)
        SELECT p.id, p.key, p.value
        FROM unnest(p_put_ids, p_put_keys, p_put_values) AS p(id, key, value)
        ON CONFLICT (instance_id, key) DO UPDATE SET value = excluded.value;
    END IF;
    IF cardinality(p_alarm_ids) > 0 THEN
        DELETE FROM {schema}.alarms AS a
        USING unnest(p_alarm_ids, p_alarm_ats) AS c(id, at)
        WHERE a.instance_id = c.id AND c.at IS NULL;
        INSERT INTO {schema}.alarms AS a (instance_id, due_at)
        SELECT c.id, c.at FROM unnest(p_alarm_ids, p_alarm_ats) AS c(id, at)
        WHERE c.at IS NOT NULL
        ON CONFLICT (instance_id) DO UPDATE SET due_at = excluded.due_at
            WHERE a.due_at IS DISTINCT FROM excluded.due_at;
    END IF;
    IF p_release THEN
        DELETE FROM {schema}.leases AS l WHERE l.instance_id = ANY (p_lease_ids);
    END IF;
    IF cardinality(p_alarm_ids) > 0 OR (p_release AND cardinality(p_lease_ids) > 0) THEN
        PERFORM pg_notify(p_channel, '');
    END IF;
    RETURN NULL;
END
$fn$"""

#: ``pg_advisory_xact_lock(key1, hashtext(instance_id))``'s first key: the record locks of
#: commit guards (the two-int4 key space, apart from the migration lock's bigint one).
RECORD_LOCK_CLASS: Final = 0x6475_7261  # "dura"

# Version 2: commit guards. ``commit_writes`` takes ``p_guard_ids``/``p_guard_keys``: when one
# of those records exists, nothing is written and it returns ``-n`` (the n-th guard). For the
# check to be atomic with every commit writing a guarded record, every commit first takes a
# transaction-scoped advisory lock per instance whose records it changes or guards, sorted by
# lock key (so commits never wait on each other's advisory locks in a cycle). These locks come
# before every row lock, and only commits take them: a commit holding row locks never waits
# for an advisory lock, so the row lock order above is unchanged.
_V2_DROP_COMMIT: Final = """
DROP FUNCTION {schema}.commit_writes(
    text[], text[], bigint[], text[], text[], text[], text[], text[], bytea[],
    text[], timestamptz[], boolean, text
)"""

_V2_COMMIT: Final = """
CREATE FUNCTION {schema}.commit_writes(
    p_lease_ids text[], p_owners text[], p_generations bigint[],
    p_purge_ids text[],
    p_delete_ids text[], p_delete_keys text[],
    p_put_ids text[], p_put_keys text[], p_put_values bytea[],
    p_alarm_ids text[], p_alarm_ats timestamptz[],
    p_release boolean, p_channel text,
    p_guard_ids text[], p_guard_keys text[]
) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    v_lost integer;
    v_key integer;
BEGIN
    -- Record locks first: per instance whose records change or are guarded, in key order.
    FOR v_key IN
        SELECT DISTINCT hashtext(u.id) AS h
        FROM unnest(p_purge_ids || p_delete_ids || p_put_ids || p_guard_ids) AS u(id)
        ORDER BY h
    LOOP
        PERFORM pg_advisory_xact_lock(1685418593, v_key);
    END LOOP;
    -- Alarm rows next (a concurrent claim holds them while it waits for lease rows).
    PERFORM 1 FROM {schema}.alarms AS a
    WHERE a.instance_id = ANY (p_alarm_ids)
    ORDER BY a.instance_id
    FOR UPDATE;
    PERFORM 1 FROM {schema}.leases AS l
    WHERE l.instance_id = ANY (p_lease_ids)
    ORDER BY l.instance_id
    FOR UPDATE;
    SELECT f.n INTO v_lost
    FROM unnest(p_lease_ids, p_owners, p_generations) WITH ORDINALITY AS f(id, owner, gen, n)
    WHERE NOT EXISTS (
        SELECT 1 FROM {schema}.leases AS l
        WHERE l.instance_id = f.id AND l.owner = f.owner AND l.generation = f.gen
    )
    ORDER BY f.n
    LIMIT 1;
    IF v_lost IS NOT NULL THEN
        RETURN v_lost;  -- fenced: nothing written
    END IF;
    IF cardinality(p_guard_ids) > 0 THEN
        -- A new statement after the locks: sees every commit that held one until now.
        SELECT g.n INTO v_lost
        FROM unnest(p_guard_ids, p_guard_keys) WITH ORDINALITY AS g(id, key, n)
        WHERE EXISTS (
            SELECT 1 FROM {schema}.records AS r WHERE r.instance_id = g.id AND r.key = g.key
        )
        ORDER BY g.n
        LIMIT 1;
        IF v_lost IS NOT NULL THEN
            RETURN -v_lost;  -- guarded: nothing written
        END IF;
    END IF;
    IF cardinality(p_purge_ids) > 0 THEN
        DELETE FROM {schema}.records AS r WHERE r.instance_id = ANY (p_purge_ids);
    END IF;
    IF cardinality(p_delete_ids) > 0 THEN
        DELETE FROM {schema}.records AS r
        USING unnest(p_delete_ids, p_delete_keys) AS d(id, key)
        WHERE r.instance_id = d.id AND r.key = d.key;
    END IF;
    IF cardinality(p_put_ids) > 0 THEN
        INSERT INTO {schema}.records AS r (instance_id, key, value)
        SELECT p.id, p.key, p.value
        FROM unnest(p_put_ids, p_put_keys, p_put_values) AS p(id, key, value)
        ON CONFLICT (instance_id, key) DO UPDATE SET value = excluded.value;
    END IF;
    IF cardinality(p_alarm_ids) > 0 THEN
        DELETE FROM {schema}.alarms AS a
        USING unnest(p_alarm_ids, p_alarm_ats) AS c(id, at)
        WHERE a.instance_id = c.id AND c.at IS NULL;
        INSERT INTO {schema}.alarms AS a (instance_id, due_at)
        SELECT c.id, c.at FROM unnest(p_alarm_ids, p_alarm_ats) AS c(id, at)
        WHERE c.at IS NOT NULL
        ON CONFLICT (instance_id) DO UPDATE SET due_at = excluded.due_at
            WHERE a.due_at IS DISTINCT FROM excluded.due_at;
    END IF;
    IF p_release THEN
        DELETE FROM {schema}.leases AS l WHERE l.instance_id = ANY (p_lease_ids);
    END IF;
    IF cardinality(p_alarm_ids) > 0 OR (p_release AND cardinality(p_lease_ids) > 0) THEN
        PERFORM pg_notify(p_channel, '');
    END IF;
    RETURN NULL;
END
$fn$"""

# Version 3: single-instance fast paths. Most operations lease, read and write one instance;
# the general functions above pay for arrays, sorting and per-instance loops they do not need.
# ``acquire_one`` is ``acquire`` of one id (the lease row is inserted or taken over in one
# statement; a live lease answers "held" and notifies ``want:<id>``, so that a process
# keeping that lease between calls lets it go); ``commit_one`` is ``commit_writes`` of one lease
# whose writes all go to that instance, without guards — the same locks in the same order
# (record lock, alarm row, lease row), fencing and release folded into one statement.
_V3_ACQUIRE_ONE: Final = """
CREATE FUNCTION {schema}.acquire_one(
    p_id text, p_owner text, p_now timestamptz, p_expires timestamptz, p_channel text
) RETURNS TABLE (generation bigint, due_at timestamptz, key text, value bytea)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    v_gen bigint;
BEGIN
    INSERT INTO {schema}.leases AS l (instance_id, owner, generation, expires_at)
    VALUES (p_id, p_owner, nextval('{schema}.generations'), p_expires)
    ON CONFLICT (instance_id) DO UPDATE
        SET owner = excluded.owner,
            generation = excluded.generation,
            expires_at = excluded.expires_at
        WHERE l.expires_at <= p_now
    RETURNING l.generation INTO v_gen;
    IF v_gen IS NULL THEN
        PERFORM pg_notify(p_channel, 'want:' || p_id);
        RETURN;  -- held
    END IF;
    -- A new statement, so a commit that held this lease until now is visible.
    RETURN QUERY
        SELECT v_gen, a.due_at, r.key, r.value
        FROM (SELECT p_id AS id) AS u
        LEFT JOIN {schema}.alarms AS a ON a.instance_id = u.id
        LEFT JOIN {schema}.records AS r ON r.instance_id = u.id;
END
$fn$"""

_V3_COMMIT_ONE: Final = """
CREATE FUNCTION {schema}.commit_one(
    p_id text, p_owner text, p_generation bigint,
    p_purge boolean, p_delete_keys text[], p_put_keys text[], p_put_values bytea[],
    p_alarm_change boolean, p_alarm_at timestamptz,
    p_release boolean, p_channel text
) RETURNS boolean
LANGUAGE plpgsql AS $fn$
BEGIN
    IF p_purge OR cardinality(p_delete_keys) > 0 OR cardinality(p_put_keys) > 0 THEN
        PERFORM pg_advisory_xact_lock(1685418593, hashtext(p_id));
    END IF;
    IF p_alarm_change THEN
        PERFORM 1 FROM {schema}.alarms AS a WHERE a.instance_id = p_id FOR UPDATE;
    END IF;
    IF p_release THEN
        DELETE FROM {schema}.leases AS l
        WHERE l.instance_id = p_id AND l.owner = p_owner AND l.generation = p_generation;
    ELSE
        PERFORM 1 FROM {schema}.leases AS l
        WHERE l.instance_id = p_id AND l.owner = p_owner AND l.generation = p_generation
        FOR UPDATE;
    END IF;
    IF NOT FOUND THEN
        RETURN true;  -- fenced: nothing written
    END IF;
    IF p_purge THEN
        DELETE FROM {schema}.records AS r WHERE r.instance_id = p_id;
    END IF;
    IF cardinality(p_delete_keys) > 0 THEN
        DELETE FROM {schema}.records AS r
        WHERE r.instance_id = p_id AND r.key = ANY (p_delete_keys);
    END IF;
    IF cardinality(p_put_keys) > 0 THEN
        INSERT INTO {schema}.records AS r (instance_id, key, value)
        SELECT p_id, p.key, p.value FROM unnest(p_put_keys, p_put_values) AS p(key, value)
        ON CONFLICT (instance_id, key) DO UPDATE SET value = excluded.value;
    END IF;
    IF p_alarm_change THEN
        IF p_alarm_at IS NULL THEN
            DELETE FROM {schema}.alarms AS a WHERE a.instance_id = p_id;
        ELSE
            INSERT INTO {schema}.alarms AS a (instance_id, due_at) VALUES (p_id, p_alarm_at)
            ON CONFLICT (instance_id) DO UPDATE SET due_at = excluded.due_at
                WHERE a.due_at IS DISTINCT FROM excluded.due_at;
        END IF;
    END IF;
    IF p_alarm_change OR p_release THEN
        PERFORM pg_notify(p_channel, '');
    END IF;
    RETURN false;
END
$fn$"""

# ``acquire`` of several ids signals ``want:<id>`` too, for each id it found held.
_V3_DROP_ACQUIRE: Final = """
DROP FUNCTION {schema}.acquire(text[], text, timestamptz, timestamptz)"""

_V3_ACQUIRE: Final = """
CREATE FUNCTION {schema}.acquire(
    p_ids text[], p_owner text, p_now timestamptz, p_expires timestamptz, p_channel text
) RETURNS TABLE (instance_id text, generation bigint, due_at timestamptz, key text, value bytea)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    v_held boolean := false;
    v_id text;
BEGIN
    -- A plain read first: a live lease answers "held" without locking anything. (Locking
    -- the existing rows here would take them out of id order with the inserts below.)
    FOR v_id IN
        SELECT l.instance_id FROM {schema}.leases AS l
        WHERE l.instance_id = ANY (p_ids) AND l.expires_at > p_now
    LOOP
        PERFORM pg_notify(p_channel, 'want:' || v_id);
        v_held := true;
    END LOOP;
    IF v_held THEN
        RETURN;
    END IF;
    IF cardinality(p_ids) = 1 THEN
        -- One id: granted or not, never half-granted.
        IF {schema}.grant_leases(p_ids, p_owner, p_now, p_expires) = 0 THEN
            RETURN;
        END IF;
    ELSE
        -- Several: a grant made elsewhere since the read may leave ours partial. Undo it in
        -- a subtransaction (only this case pays for one).
        BEGIN
            IF {schema}.grant_leases(p_ids, p_owner, p_now, p_expires)
                    < cardinality(p_ids) THEN
                RAISE EXCEPTION 'partial grant' USING ERRCODE = 'DE001';
            END IF;
        EXCEPTION WHEN SQLSTATE 'DE001' THEN
            RETURN;
        END;
    END IF;
    -- A new statement, so a commit that held one of these leases until now is visible.
    RETURN QUERY
        SELECT l.instance_id, l.generation, a.due_at, r.key, r.value
        FROM {schema}.leases AS l
        LEFT JOIN {schema}.alarms AS a ON a.instance_id = l.instance_id
        LEFT JOIN {schema}.records AS r ON r.instance_id = l.instance_id
        WHERE l.instance_id = ANY (p_ids);
END
$fn$"""

#: ``pg_advisory_xact_lock`` key of the feed ("durafeed"): held by whoever numbers entries
#: (``sequence_feed``) or trims them (``append_feed``), one at a time; the others skip.
FEED_LOCK_ID: Final = 0x6475_7261_6665_6564

# Version 5: the feed. A sequence value drawn at insert is not commit-ordered (a transaction
# that drew 10 may commit after one that drew 11, and a reader past 11 would never see 10),
# and a counter locked until commit would make every commit wait for the previous one's
# fsync. So a commit only inserts its entries (``id`` from a sequence, ``seq`` NULL: no lock
# held), and readers number them: ``sequence_feed`` gives the committed, unnumbered entries
# their ``seq`` in ``id`` order, one numbering at a time (an advisory lock, taken before the
# statement that reads the entries, so it sees every number given before). Numbers are
# handed out only by committed numberings, each after the previous one committed: a reader
# that saw ``seq`` n never sees a smaller one appear. Trimming (by ``id``, the newest
# ``retain`` kept) takes the same lock, so it never races a numbering over the same rows.
_V5_FEED: Final = (
    "CREATE SEQUENCE {schema}.feed_ids AS bigint",
    "CREATE SEQUENCE {schema}.feed_seqs AS bigint",
    """
CREATE TABLE {schema}.feed (
    id bigint PRIMARY KEY DEFAULT nextval('{schema}.feed_ids'),
    seq bigint,
    data bytea NOT NULL
)""",
    "CREATE UNIQUE INDEX feed_seq ON {schema}.feed (seq) WHERE seq IS NOT NULL",
    "CREATE INDEX feed_unnumbered ON {schema}.feed (id) WHERE seq IS NULL",
    "ALTER TABLE {schema}.feed SET (" + ", ".join(HOT_TABLE_OPTIONS[1:]) + ")",
    f"""
CREATE FUNCTION {{schema}}.append_feed(p_apply boolean, p_feed bytea[], p_retain integer)
RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    v_n bigint := coalesce(cardinality(p_feed), 0);
    v_step bigint := greatest(p_retain / 10, 1);
    v_last bigint;
BEGIN
    IF NOT p_apply OR v_n = 0 THEN
        RETURN;
    END IF;
    INSERT INTO {{schema}}.feed (data)
    SELECT f.d FROM unnest(p_feed) WITH ORDINALITY AS f(d, n) ORDER BY f.n;
    v_last := currval('{{schema}}.feed_ids');
    -- Every tenth of ``retain`` appended: delete a bounded batch of what is older than the
    -- newest ``retain`` (skipped while a numbering runs; the next trim takes twice a step).
    IF v_last > p_retain AND v_last / v_step <> (v_last - v_n) / v_step
            AND pg_try_advisory_xact_lock({FEED_LOCK_ID}) THEN
        DELETE FROM {{schema}}.feed AS f WHERE f.id IN (
            SELECT o.id FROM {{schema}}.feed AS o
            WHERE o.id <= v_last - p_retain
            ORDER BY o.id
            LIMIT 2 * v_step + v_n
        );
    END IF;
END
$fn$""",
    f"""
CREATE FUNCTION {{schema}}.sequence_feed(p_limit integer) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    v_n bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM {{schema}}.feed AS f WHERE f.seq IS NULL)
            OR NOT pg_try_advisory_xact_lock({FEED_LOCK_ID}) THEN
        RETURN 0;  -- nothing to number, or another numbering runs (it numbers these)
    END IF;
    -- A new statement after the lock: it sees the numbers of every earlier numbering.
    WITH todo AS (
        SELECT f.id FROM {{schema}}.feed AS f WHERE f.seq IS NULL ORDER BY f.id LIMIT p_limit
    ), numbered AS (
        SELECT t.id, nextval('{{schema}}.feed_seqs') AS seq  -- runs after the sort
        FROM todo AS t
        ORDER BY t.id
    )
    UPDATE {{schema}}.feed AS f SET seq = n.seq FROM numbered AS n WHERE f.id = n.id;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END
$fn$""",
)

# Version 6: ``claim_due`` judges lease expiry at ``p_lease_now``, apart from ``p_now`` (when
# alarms are due), so that leases can expire by the server's clock while alarms stay on the
# callers' (``lease_clock="server"``; ``p_lease_now = p_now`` otherwise).
_V6_DROP_CLAIM_DUE: Final = """
DROP FUNCTION {schema}.claim_due(timestamptz, text, timestamptz, integer)"""

_V6_CLAIM_DUE: Final = """
CREATE FUNCTION {schema}.claim_due(
    p_now timestamptz, p_owner text, p_expires timestamptz, p_limit integer,
    p_lease_now timestamptz
) RETURNS TABLE (instance_id text, generation bigint, due_at timestamptz, key text, value bytea)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    v_ids text[];
BEGIN
    WITH due AS (
        SELECT a.instance_id, a.due_at FROM {schema}.alarms AS a
        WHERE a.due_at <= p_now
          AND NOT EXISTS (
              SELECT 1 FROM {schema}.leases AS l
              WHERE l.instance_id = a.instance_id AND l.expires_at > p_lease_now
          )
        ORDER BY a.due_at, a.instance_id
        LIMIT p_limit
        FOR UPDATE OF a SKIP LOCKED
    ), numbered AS (
        -- Generations in claim order (nextval runs after the sort)...
        SELECT d.instance_id, nextval('{schema}.generations') AS gen
        FROM due AS d
        ORDER BY d.due_at, d.instance_id
    ), granted AS (
        INSERT INTO {schema}.leases AS l (instance_id, owner, generation, expires_at)
        SELECT n.instance_id, p_owner, n.gen, p_expires
        FROM numbered AS n
        ORDER BY n.instance_id  -- ...while the lease rows are locked in id order.
        ON CONFLICT (instance_id) DO UPDATE
            SET owner = excluded.owner,
                generation = excluded.generation,
                expires_at = excluded.expires_at
            -- The latest version decides: a lease granted since this statement began wins.
            WHERE l.expires_at <= p_lease_now
        RETURNING l.instance_id
    )
    SELECT array_agg(g.instance_id) INTO v_ids FROM granted AS g;
    IF v_ids IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
        SELECT l.instance_id, l.generation, a.due_at, r.key, r.value
        FROM {schema}.leases AS l
        JOIN {schema}.alarms AS a ON a.instance_id = l.instance_id
        LEFT JOIN {schema}.records AS r ON r.instance_id = l.instance_id
        WHERE l.instance_id = ANY (v_ids)
        ORDER BY a.due_at, l.instance_id, r.key;
END
$fn$"""

#: Statements of each schema version, applied in order (index 0 makes version 1).
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (*_V1_TABLES, *_V1_TUNING, _V1_GRANT, _V1_ACQUIRE, _V1_CLAIM_DUE, _V1_COMMIT),
    (_V2_DROP_COMMIT, _V2_COMMIT),
    (_V3_ACQUIRE_ONE, _V3_COMMIT_ONE, _V3_DROP_ACQUIRE, _V3_ACQUIRE),
    (
        *ix.V4_TABLES,
        "ALTER TABLE {schema}.index_counts SET (" + ", ".join(HOT_TABLE_OPTIONS) + ")",
        ix.V4_SET_INDEX,
        *ix.V4_DROP_COMMITS,
        ix.V4_COMMIT,
        ix.V4_COMMIT_ONE,
    ),
    _V5_FEED,
    (_V6_DROP_CLAIM_DUE, _V6_CLAIM_DUE),
)

# -- operations ------------------------------------------------------------------------------
#
# ``{lease_now}`` and ``{lease_until}`` are where a lease operation takes "now" and the new
# expiry from: with ``lease_clock="caller"`` two parameters (the caller's ``now`` and
# ``now + ttl``), with ``lease_clock="server"`` the server's ``statement_timestamp()`` and one
# parameter, the ttl (an interval). See `lease_clock_sql`.

#: Lease clocks: where lease expiry is judged (see ``PostgresStorage``).
LEASE_CLOCKS: Final = ("server", "caller")


def lease_clock_sql(lease_clock: str, marker: str) -> dict[str, str]:
    """The ``{lease_now}`` and ``{lease_until}`` of a template (``marker``: ``%s``/``%b``)."""
    if lease_clock == "server":
        return {
            "lease_now": "statement_timestamp()",
            "lease_until": f"statement_timestamp() + {marker}::interval",
        }
    return {"lease_now": f"{marker}::timestamptz", "lease_until": f"{marker}::timestamptz"}


ACQUIRE: Final = (
    "SELECT * FROM {schema}.acquire(%s::text[], %s::text, {lease_now}, {lease_until}, {channel})"
)

#: ``{channel}`` is the notify channel as a string literal (a checked identifier): one
#: parameter less to adapt on the hottest calls.
ACQUIRE_ONE: Final = (
    "SELECT * FROM {schema}.acquire_one(%b::text, %b::text, {lease_now}, {lease_until}, {channel})"
)

#: The payload prefix of the notification ``acquire_one`` sends when a lease is held.
WANT_PREFIX: Final = "want:"

#: Empty arrays may be passed as NULL (``cardinality(NULL) > 0`` is not true). Parameters in
#: binary format: nothing to escape in the record values.
COMMIT_ONE: Final = """
SELECT {schema}.commit_one(
    %b::text, %b::text, %b::bigint,
    %b::boolean, %b::text[], %b::text[], %b::bytea[],
    %b::boolean, %b::timestamptz,
    %b::boolean, {channel},
    %b::boolean, %b::text[], %b::text[]
)"""

CLAIM_DUE: Final = (
    "SELECT * FROM {schema}.claim_due(%s, %s::text, {lease_until}, %s::integer, {lease_now})"
)

COMMIT: Final = """
SELECT {schema}.commit_writes(
    %s::text[], %s::text[], %s::bigint[],
    %s::text[],
    %s::text[], %s::text[],
    %s::text[], %s::text[], %s::bytea[],
    %s::text[], %s::timestamptz[],
    %s::boolean, %s::text,
    %s::text[], %s::text[],
    %s::text[], %s::text[], %s::text[], %s::text[]
)"""


def _with_feed(call: str, applied: str, mark: str) -> str:
    """``call`` (one ``SELECT f(...)``) that also appends feed entries in the same statement,
    so in the same transaction, when ``applied`` (a condition on its result ``c.lost``)
    holds: two more parameters, the entries (``bytea[]``) and the retention (``integer``)."""
    inner = call.strip().removeprefix("SELECT ")
    return (
        f"WITH c AS MATERIALIZED (SELECT {inner} AS lost)\n"
        f"SELECT c.lost, {{schema}}.append_feed({applied}, {mark}::bytea[], {mark}::integer)"
        " FROM c"
    )


#: ``COMMIT_ONE`` and ``COMMIT`` with feed entries (appended unless fenced or guarded).
COMMIT_ONE_FEED: Final = _with_feed(COMMIT_ONE, "NOT c.lost", "%b")
COMMIT_FEED: Final = _with_feed(COMMIT, "c.lost IS NULL", "%s")


#: Number up to ``%s`` committed, unnumbered feed entries (its own transaction).
SEQUENCE_FEED: Final = "SELECT {schema}.sequence_feed(%s::integer)"

READ_FEED: Final = """
SELECT f.seq, f.data FROM {schema}.feed AS f
WHERE f.seq > %s::bigint AND f.seq IS NOT NULL
ORDER BY f.seq
LIMIT %s::integer"""

FEED_HEAD: Final = "SELECT coalesce(max(f.seq), 0) FROM {schema}.feed AS f WHERE f.seq IS NOT NULL"

EXTEND: Final = """
UPDATE {schema}.leases SET expires_at = {lease_until}
WHERE instance_id = %s AND owner = %s AND generation = %s
RETURNING 1"""

RELEASE: Final = """
WITH mine AS (
    SELECT l.instance_id FROM {schema}.leases AS l
    JOIN unnest(%s::text[], %s::text[], %s::bigint[]) AS f(id, owner, gen)
        ON l.instance_id = f.id AND l.owner = f.owner AND l.generation = f.gen
    ORDER BY l.instance_id
    FOR UPDATE OF l
), gone AS (
    DELETE FROM {schema}.leases AS l USING mine AS m
    WHERE l.instance_id = m.instance_id
    RETURNING 1
)
SELECT pg_notify(%s::text, '') WHERE EXISTS (SELECT 1 FROM gone)"""

LOAD: Final = """
SELECT u.id, a.due_at, r.key, r.value
FROM unnest(%s::text[]) AS u(id)
LEFT JOIN {schema}.alarms AS a ON a.instance_id = u.id
LEFT JOIN {schema}.records AS r ON r.instance_id = u.id"""

NEXT_ALARM_AT: Final = "SELECT min(due_at) FROM {schema}.alarms"

#: ``starts_with`` keeps ``%`` and ``_`` literal; the range conditions (``upper`` is the least
#: string above every id with the prefix, or NULL) let the primary keys serve the prefix.
#: ``after`` is ``''`` when absent (every id is greater), ``limit`` NULL for no limit.
LIST_INSTANCES: Final = """
SELECT ids.instance_id FROM (
    SELECT r.instance_id FROM {schema}.records AS r
    WHERE r.instance_id >= %(prefix)s::text AND r.instance_id > %(after)s::text
      AND (%(upper)s::text IS NULL OR r.instance_id < %(upper)s::text)
      AND starts_with(r.instance_id, %(prefix)s::text)
    UNION
    SELECT a.instance_id FROM {schema}.alarms AS a
    WHERE a.instance_id >= %(prefix)s::text AND a.instance_id > %(after)s::text
      AND (%(upper)s::text IS NULL OR a.instance_id < %(upper)s::text)
      AND starts_with(a.instance_id, %(prefix)s::text)
) AS ids
ORDER BY ids.instance_id
LIMIT %(limit)s::bigint"""

SET_TIME_ZONE: Final = "SET TIME ZONE 'UTC'"

LISTEN: Final = "LISTEN {channel}"
