-- Schema version 1: the tables and the lease, claim and commit functions.
-- Frozen: the statements its migration ran, as that release ran them
-- ({schema}: the quoted schema name; the meta table and the version row are made
-- apart). Test data for tests/storage/test_postgres_schema.py: never edit; when a
-- release changes the schema, add its version's file.

CREATE TABLE {schema}.records (
    instance_id text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (instance_id, key)
);
CREATE TABLE {schema}.alarms (
    instance_id text COLLATE "C" PRIMARY KEY,
    due_at timestamptz NOT NULL
);
CREATE INDEX alarms_due ON {schema}.alarms (due_at, instance_id);
CREATE TABLE {schema}.leases (
    instance_id text COLLATE "C" PRIMARY KEY,
    owner text NOT NULL,
    generation bigint NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE SEQUENCE {schema}.generations AS bigint;
ALTER TABLE {schema}.alarms SET (fillfactor=70, autovacuum_vacuum_scale_factor=0.01, autovacuum_vacuum_threshold=100, autovacuum_analyze_scale_factor=0.02, autovacuum_vacuum_cost_delay=0);
ALTER TABLE {schema}.leases SET (fillfactor=70, autovacuum_vacuum_scale_factor=0.01, autovacuum_vacuum_threshold=100, autovacuum_analyze_scale_factor=0.02, autovacuum_vacuum_cost_delay=0);
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
$fn$;
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
$fn$;
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
$fn$;
