-- Drug exposures of screened persons whose drug (ingredient or product, via the descendants
-- in the concept set) or source concept (ATC) is in a drug group. Every row counts as given.
SELECT
    t.drug_exposure_id AS row_id
    , t.person_id
    , t.drug_concept_id AS concept_id
    , t.drug_source_concept_id AS source_concept_id
    , t.drug_source_value AS source_value
    , t.drug_exposure_start_date AS start_date
    , t.drug_exposure_end_date AS end_date
FROM {cdm}drug_exposure t
INNER JOIN leopard_person lp ON lp.person_id = t.person_id
WHERE t.drug_exposure_start_date >= :since
    AND (
        t.drug_concept_id IN (SELECT c.concept_id FROM leopard_concept c)
        OR t.drug_source_concept_id IN (SELECT c.concept_id FROM leopard_concept c)
    )
