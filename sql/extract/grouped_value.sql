-- grouped.sql for measurement / observation: the value concept's coding comes along, for the
-- stage values and the disease status (progression) rule.
SELECT
    a.*
    , vc.vocabulary_id AS value_vocabulary_id
    , {vc.text[concept_code]} AS value_concept_code
FROM ({rows}) a
LEFT JOIN {vocab}concept vc ON vc.concept_id = a.value_concept_id
WHERE a.candidate = 1{since}
