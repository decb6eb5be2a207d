-- unmatched_codes.csv (spec §5 v2) for one table: the screened persons' rows in no code group
-- (the activity rows, undated ones included, quarantined ones not), per code: the standard
-- concept, else the source concept (concept id 0 = no concept), else the source value as text.
SELECT
    u.code_system
    , u.code
    , u.display
    , COUNT(*) AS n_records
    , COUNT(DISTINCT u.person_id) AS n_patients
FROM (
    SELECT
        a.person_id
        , CASE
            WHEN c.concept_id IS NOT NULL THEN c.vocabulary_id
            WHEN sc.concept_id IS NOT NULL THEN sc.vocabulary_id
            ELSE ''
        END AS code_system
        , CASE
            WHEN c.concept_id IS NOT NULL THEN {c.text[concept_code]}
            WHEN sc.concept_id IS NOT NULL THEN {sc.text[concept_code]}
            ELSE a.source_value
        END AS code
        , CASE
            WHEN c.concept_id IS NOT NULL THEN c.concept_name
            WHEN sc.concept_id IS NOT NULL THEN sc.concept_name
        END AS display
    FROM ({rows}) a
    LEFT JOIN {vocab}concept c ON c.concept_id = a.concept_id AND a.concept_id <> 0
    LEFT JOIN {vocab}concept sc ON sc.concept_id = a.source_concept_id AND a.source_concept_id <> 0
    WHERE (
        a.candidate = 0
        OR a.row_id IN (SELECT ug.row_id FROM leopard_ungrouped ug WHERE ug.record = :record)
    ){since}
        AND a.known = 1
        AND (a.start_date IS NULL OR a.start_date <= :future)
) u
GROUP BY u.code_system, u.code, u.display
