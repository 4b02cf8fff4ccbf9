-- Schema version 3: acquire_one, commit_one, want:<id> from acquire.
-- Frozen: the statements its migration ran, as that release ran them, after v1.sql to v2.sql
-- ({schema}: the quoted schema name; the meta table and the version row are made
-- apart). Test data for tests/storage/test_postgres_schema.py: never edit; when a
-- release changes the schema, add its version's file.

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
$fn$;
DROP FUNCTION {schema}.acquire(text[], text, timestamptz, timestamptz);
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
