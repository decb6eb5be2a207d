-- Observations of screened persons (stage group or disease status with a coded or text value).
SELECT
    t.observation_id AS row_id
    , t.person_id
    , t.observation_concept_id AS concept_id
    , t.observation_source_concept_id AS source_concept_id
    , t.observation_source_value AS source_value
    , t.observation_date AS start_date
    , t.value_as_concept_id AS value_concept_id
    , vc.vocabulary_id AS value_vocabulary_id
    , vc.concept_code AS value_concept_code
    , t.value_as_string
FROM {cdm}observation t
INNER JOIN leopard_person lp ON lp.person_id = t.person_id
LEFT JOIN {vocab}concept vc ON vc.concept_id = t.value_as_concept_id
WHERE t.observation_date >= :since
    AND (
        t.observation_concept_id IN (SELECT c.concept_id FROM leopard_concept c)
        OR t.observation_source_concept_id IN (SELECT c.concept_id FROM leopard_concept c)
    )
