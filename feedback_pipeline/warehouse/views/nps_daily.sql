-- NPS per collected day: Formbricks records of field type nps, and Usersnap answers whose label
-- mentions NPS (the first such ordered_inputs entry by `order`). Promoters 9-10, detractors 0-6;
-- scores outside 0..10 are ignored.
CREATE OR REPLACE VIEW nps_daily AS
WITH usersnap AS (
    SELECT f.collected_date, try_cast(e ->> 'value' AS DOUBLE) AS score
    FROM feedback f, unnest(CAST(f.attributes -> '$.ordered_inputs' AS JSON[])) AS t(e)
    WHERE f.provider = 'usersnap' AND lower(e ->> 'label') LIKE '%nps%'
    QUALIFY row_number() OVER (PARTITION BY f.account_id, f.feedback_id ORDER BY try_cast(e ->> 'order' AS INTEGER)) = 1
),
answers AS (
    SELECT collected_date, rating AS score FROM feedback WHERE provider = 'formbricks' AND category = 'nps'
    UNION ALL SELECT collected_date, score FROM usersnap
)
SELECT collected_date,
       count(*) AS responses,
       count(*) FILTER (WHERE score >= 9) AS promoters,
       count(*) FILTER (WHERE score >= 7 AND score < 9) AS passives,
       count(*) FILTER (WHERE score <= 6) AS detractors,
       round(100.0 * (count(*) FILTER (WHERE score >= 9) - count(*) FILTER (WHERE score <= 6)) / count(*), 1) AS nps
FROM answers WHERE score BETWEEN 0 AND 10
GROUP BY collected_date
