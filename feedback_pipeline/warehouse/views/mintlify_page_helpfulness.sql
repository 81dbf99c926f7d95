-- Mintlify helpful / not helpful votes per page.
CREATE OR REPLACE VIEW mintlify_page_helpfulness AS
SELECT page_url,
       count(*) AS votes,
       count(*) FILTER (WHERE try_cast(attributes ->> '$.helpful' AS BOOLEAN)) AS helpful,
       count(*) FILTER (WHERE NOT try_cast(attributes ->> '$.helpful' AS BOOLEAN)) AS not_helpful,
       round(count(*) FILTER (WHERE try_cast(attributes ->> '$.helpful' AS BOOLEAN)) / count(*), 4) AS helpful_share
FROM feedback
WHERE provider = 'mintlify' AND try_cast(attributes ->> '$.helpful' AS BOOLEAN) IS NOT NULL
GROUP BY page_url
