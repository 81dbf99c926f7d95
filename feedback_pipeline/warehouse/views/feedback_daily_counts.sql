-- Rows per collected day, provider and unified status ('none' when the status is NULL).
CREATE OR REPLACE VIEW feedback_daily_counts AS
SELECT collected_date, provider, coalesce(status, 'none') AS status, count(*) AS feedback
FROM feedback GROUP BY ALL
