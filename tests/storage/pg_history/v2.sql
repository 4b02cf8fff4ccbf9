-- Schema version 2: commit guards.
-- Frozen: the statements its migration ran, as that release ran them, after v1.sql to v1.sql
-- ({schema}: the quoted schema name; the meta table and the version row are made
-- apart). Test data for tests/storage/test_postgres_schema.py: never edit; when a
-- release changes the schema, add its version's file.

DROP FUNCTION {schema}.commit_writes(
    text[], text[], bigint[], text[], text[], text[], text[], text[], bytea[],
    text[], timestamptz[], boolean, text
);
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
$fn$;
