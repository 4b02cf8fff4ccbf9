-- PostgresStorage's functions, as they are today (schema version 6): one operation each, in
-- one round trip. Fresh databases run this file after tables.sql; a migration drops the
-- schema's functions of these names (whatever their arguments) and runs it again, so each
-- function exists once, here (older versions of them live only in the migration tests'
-- frozen schemas).
--
-- {schema} is the quoted schema name; nothing else is interpolated. They are PL/pgSQL
-- because an operation must lock rows and *then* read them: a single SQL statement reads
-- with the snapshot it started with, which can predate a commit it waited for, while each
-- statement of a PL/pgSQL function takes a fresh snapshot.
--
-- Lock order, everywhere: record locks (transaction-scoped advisory locks
-- pg_advisory_xact_lock(1685418593 = "dura", hashtext(instance_id)), in key order, taken
-- only by commits, before any row lock), then alarm rows, then lease rows, each in instance
-- id order, then index count rows in index name order, last. A claim locks alarms then
-- leases; a commit that moves alarms locks them before the leases; acquire, extend and
-- release only touch leases (sorted). So no two operations wait on each other in a cycle.
-- The feed's advisory lock (7238817738723255652, "durafeed") is only ever tried
-- (pg_try_advisory_xact_lock), never waited for.

-- grant_leases: lease p_ids (free or expired at p_now) to p_owner until p_expires; how many
-- were granted. The upsert's WHERE makes the latest version of a lease decide, so a lease
-- granted meanwhile elsewhere is never overwritten. Generations follow p_ids' order.
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
$fn$;

-- acquire: lease every id in p_ids, all or none, and read their snapshots (no rows: held).
-- Each live lease found sends 'want:<id>' on p_channel, so that a process keeping that
-- lease between calls (lease_linger) lets it go.
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
$fn$;

-- acquire_one: acquire of one id, without arrays: the lease row is inserted or taken over
-- in one statement (a live lease answers "held" and notifies 'want:<id>'), then the
-- snapshot is read in a new statement.
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
$fn$;

-- claim_due: lease up to p_limit instances whose alarm is due at p_now and whose lease is
-- free at p_lease_now (the server's clock with lease_clock="server", p_now otherwise),
-- oldest alarm first, ties by id; FOR UPDATE SKIP LOCKED, so concurrent claimers take
-- disjoint rows and never wait for each other. Returns the snapshots, by claim order.
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
$fn$;

-- set_index: replace the index entries of p_ids with (p_entry_ids, p_names, p_keys) and add
-- the difference to index_counts, on the row of this connection's shard
-- (pg_backend_pid() % 16: concurrent commits rarely share a count row), in name order.
-- Count rows that reach 0 are deleted. Called by the commit functions, last.
CREATE FUNCTION {schema}.set_index(
    p_ids text[], p_entry_ids text[], p_names text[], p_keys text[]
) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    v_removed text[];
    v_added text[];
    v_shard integer := pg_backend_pid() % 16;
BEGIN
    WITH gone AS (
        DELETE FROM {schema}.index_entries AS e WHERE e.instance_id = ANY (p_ids)
        RETURNING e.name
    )
    SELECT array_agg(g.name) INTO v_removed FROM gone AS g;
    IF cardinality(p_entry_ids) > 0 THEN
        WITH added AS (
            INSERT INTO {schema}.index_entries AS e (instance_id, name, key)
            SELECT u.id, u.name, u.key FROM unnest(p_entry_ids, p_names, p_keys) AS u(id, name, key)
            RETURNING e.name
        )
        SELECT array_agg(a.name) INTO v_added FROM added AS a;
    END IF;
    IF v_removed IS NULL AND v_added IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO {schema}.index_counts AS c (name, shard, n)
    SELECT d.name, v_shard, sum(d.delta)
    FROM (
        SELECT r.name, -1 FROM unnest(v_removed) AS r(name)
        UNION ALL
        SELECT a.name, 1 FROM unnest(v_added) AS a(name)
    ) AS d(name, delta)
    GROUP BY d.name
    HAVING sum(d.delta) <> 0
    ORDER BY d.name
    ON CONFLICT (name, shard) DO UPDATE SET n = c.n + excluded.n;
    IF v_removed IS NOT NULL THEN
        DELETE FROM {schema}.index_counts AS c
        WHERE c.name = ANY (v_removed) AND c.shard = v_shard AND c.n = 0;
    END IF;
END
$fn$;

-- commit_writes: apply a commit if every lease (p_lease_ids, p_owners, p_generations) is
-- current and no guard record (p_guard_ids, p_guard_keys) exists: purges, deletes, puts,
-- alarm changes, index entries, the release and the NOTIFY, in one transaction. Returns
-- NULL when applied, n when the n-th lease is fenced, -n when the n-th guard is present
-- (nothing written either way). The record locks make a guard check atomic with every
-- commit that writes the guarded record.
CREATE FUNCTION {schema}.commit_writes(
    p_lease_ids text[], p_owners text[], p_generations bigint[],
    p_purge_ids text[],
    p_delete_ids text[], p_delete_keys text[],
    p_put_ids text[], p_put_keys text[], p_put_values bytea[],
    p_alarm_ids text[], p_alarm_ats timestamptz[],
    p_release boolean, p_channel text,
    p_guard_ids text[], p_guard_keys text[],
    p_index_ids text[], p_entry_ids text[], p_entry_names text[], p_entry_keys text[]
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
    IF cardinality(p_index_ids) > 0 THEN
        PERFORM {schema}.set_index(p_index_ids, p_entry_ids, p_entry_names, p_entry_keys);
    END IF;
    IF p_release THEN
        DELETE FROM {schema}.leases AS l WHERE l.instance_id = ANY (p_lease_ids);
    END IF;
    IF cardinality(p_alarm_ids) > 0 OR (p_release AND cardinality(p_lease_ids) > 0) THEN
        PERFORM pg_notify(p_channel, '');
    END IF;
    RETURN NULL;
END
$fn$;

-- commit_one: commit_writes of one lease whose writes all go to its own instance, without
-- guards: the same locks in the same order, the fence check and the release folded into
-- one DELETE (a SELECT ... FOR UPDATE when the lease is kept). Returns true when fenced.
CREATE FUNCTION {schema}.commit_one(
    p_id text, p_owner text, p_generation bigint,
    p_purge boolean, p_delete_keys text[], p_put_keys text[], p_put_values bytea[],
    p_alarm_change boolean, p_alarm_at timestamptz,
    p_release boolean, p_channel text,
    p_index boolean, p_index_names text[], p_index_keys text[]
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
    IF p_index OR p_purge THEN
        PERFORM {schema}.set_index(
            ARRAY[p_id],
            array_fill(p_id, ARRAY[coalesce(cardinality(p_index_names), 0)]),
            p_index_names, p_index_keys
        );
    END IF;
    IF p_alarm_change OR p_release THEN
        PERFORM pg_notify(p_channel, '');
    END IF;
    RETURN false;
END
$fn$;

-- append_feed: when p_apply (the commit applied), insert p_feed in order (seq left NULL:
-- no lock is held to commit). Every tenth of p_retain appended, delete a bounded batch of
-- entries older than the newest p_retain, if no numbering runs (the next trim catches up).
CREATE FUNCTION {schema}.append_feed(p_apply boolean, p_feed bytea[], p_retain integer)
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
    INSERT INTO {schema}.feed (data)
    SELECT f.d FROM unnest(p_feed) WITH ORDINALITY AS f(d, n) ORDER BY f.n;
    v_last := currval('{schema}.feed_ids');
    -- Every tenth of ``retain`` appended: delete a bounded batch of what is older than the
    -- newest ``retain`` (skipped while a numbering runs; the next trim takes twice a step).
    IF v_last > p_retain AND v_last / v_step <> (v_last - v_n) / v_step
            AND pg_try_advisory_xact_lock(7238817738723255652) THEN
        DELETE FROM {schema}.feed AS f WHERE f.id IN (
            SELECT o.id FROM {schema}.feed AS o
            WHERE o.id <= v_last - p_retain
            ORDER BY o.id
            LIMIT 2 * v_step + v_n
        );
    END IF;
END
$fn$;

-- sequence_feed: give up to p_limit committed, unnumbered entries their seq, in id order,
-- under the feed lock (only one numbering at a time; the others return 0 and find them
-- numbered). Runs in its own transaction, before a read of the feed.
CREATE FUNCTION {schema}.sequence_feed(p_limit integer) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    v_n bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM {schema}.feed AS f WHERE f.seq IS NULL)
            OR NOT pg_try_advisory_xact_lock(7238817738723255652) THEN
        RETURN 0;  -- nothing to number, or another numbering runs (it numbers these)
    END IF;
    -- A new statement after the lock: it sees the numbers of every earlier numbering.
    WITH todo AS (
        SELECT f.id FROM {schema}.feed AS f WHERE f.seq IS NULL ORDER BY f.id LIMIT p_limit
    ), numbered AS (
        SELECT t.id, nextval('{schema}.feed_seqs') AS seq  -- runs after the sort
        FROM todo AS t
        ORDER BY t.id
    )
    UPDATE {schema}.feed AS f SET seq = n.seq FROM numbered AS n WHERE f.id = n.id;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END
$fn$;
