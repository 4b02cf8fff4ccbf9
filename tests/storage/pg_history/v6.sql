-- Schema version 6: claim_due's instant for lease expiry.
-- Frozen: the statements its migration ran, as that release ran them, after v1.sql to v5.sql
-- ({schema}: the quoted schema name; the meta table and the version row are made
-- apart). Test data for tests/storage/test_postgres_schema.py: never edit; when a
-- release changes the schema, add its version's file.

DROP FUNCTION {schema}.claim_due(timestamptz, text, timestamptz, integer);
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
