"""A model that breaks ml.contract is refused (ml.model_access) instead of its answers being served or stored."""
from __future__ import annotations

import pandas as pd
import pytest

from ml.model_access import ContractError, predict_arrays


class FakeModel:
    def __init__(self, frame: pd.DataFrame):
        self.frame = frame

    def predict(self, model_input: pd.DataFrame) -> pd.DataFrame:
        assert list(model_input.columns) == ["text"]
        return self.frame


GOOD = pd.DataFrame({"label": ["positive"], "proba_negative": [0.1], "proba_neutral": [0.2],
                     "proba_positive": [0.7]})


def test_a_conforming_answer_becomes_label_and_probabilities():
    labels, probabilities = predict_arrays(FakeModel(GOOD), ["great"])
    assert labels == ["positive"] and probabilities.tolist() == [[0.1, 0.2, 0.7]]


@pytest.mark.parametrize("broken, words", [
    (GOOD.drop(columns="proba_neutral"), "columns"),
    (pd.concat([GOOD, GOOD]), "2 rows"),
    (GOOD.assign(label="very positive"), "labels"),
    (GOOD.assign(proba_positive=float("nan")), "finite"),
])
def test_a_broken_answer_is_a_contract_error(broken, words):
    with pytest.raises(ContractError, match=words):
        predict_arrays(FakeModel(broken), ["great"])
