-- Episodes (CDM 5.4 oncology extension) of screened persons: Disease Recurrence / Progression.
SELECT
    t.episode_id AS row_id
    , t.person_id
    , t.episode_concept_id AS concept_id
    , t.episode_source_concept_id AS source_concept_id
    , t.episode_source_value AS source_value
    , t.episode_start_date AS start_date
    , t.episode_end_date AS end_date
FROM {cdm}episode t
INNER JOIN leopard_person lp ON lp.person_id = t.person_id
WHERE t.episode_start_date >= :since
    AND (
        t.episode_concept_id IN (SELECT c.concept_id FROM leopard_concept c)
        OR t.episode_source_concept_id IN (SELECT c.concept_id FROM leopard_concept c)
    )
