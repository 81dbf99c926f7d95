-- Of the feedback that has a unified status: how much got triaged, worked on, resolved.
CREATE OR REPLACE VIEW feedback_status_funnel AS
WITH s AS (SELECT provider, status FROM feedback WHERE status IS NOT NULL),
stages AS (
    SELECT provider, 1 AS stage_order, 'received' AS stage, count(*) AS feedback FROM s GROUP BY provider
    UNION ALL SELECT provider, 2, 'triaged', count(*) FILTER (WHERE status <> 'open') FROM s GROUP BY provider
    UNION ALL SELECT provider, 3, 'in_progress_or_resolved', count(*) FILTER (WHERE status IN ('in_progress', 'resolved')) FROM s GROUP BY provider
    UNION ALL SELECT provider, 4, 'resolved', count(*) FILTER (WHERE status = 'resolved') FROM s GROUP BY provider
)
SELECT provider, stage_order, stage, feedback,
       round(feedback / first_value(feedback) OVER (PARTITION BY provider ORDER BY stage_order), 4) AS share_of_received
FROM stages
