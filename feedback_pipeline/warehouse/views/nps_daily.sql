-- NPS per collected day: the union of every provider spec's `nps_answers` query (each a SELECT of
-- (collected_date, score) over its own rows; migrations.py renders them into the CTE below).
-- Promoters 9-10, passives 7-8, detractors 0-6; scores outside 0..10 are ignored. A fractional
-- score falls in the bucket of its whole part (6.5 is a detractor, 8.5 a passive), so the three
-- buckets always add up to the responses.
CREATE OR REPLACE VIEW nps_daily AS
WITH answers AS (
{answers}
)
SELECT collected_date,
       count(*) AS responses,
       count(*) FILTER (WHERE score >= 9) AS promoters,
       count(*) FILTER (WHERE score >= 7 AND score < 9) AS passives,
       count(*) FILTER (WHERE score < 7) AS detractors,
       round(100.0 * (count(*) FILTER (WHERE score >= 9) - count(*) FILTER (WHERE score < 7)) / count(*), 1) AS nps
FROM answers WHERE score BETWEEN 0 AND 10
GROUP BY collected_date
