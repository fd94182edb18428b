"""What every registered TweetOps model promises, so training, promotion, serving and drift agree.

A model version is an MLflow pyfunc: input a pandas DataFrame with a `text` column (raw tweet
text; the model normalises it itself with tweetops.core.text), output a DataFrame with PREDICTION_COLUMNS.
"""
LABELS = ("negative", "neutral", "positive")
PROBA_COLUMNS = tuple(f"proba_{label}" for label in LABELS)
PREDICTION_COLUMNS = ("label", *PROBA_COLUMNS)

CHAMPION = "champion"
CHALLENGER = "challenger"

# Lineage tags on every training run (and copied onto its model version).
TAG_GIT_COMMIT = "tweetops.git_commit"
TAG_CONFIG_NAME = "tweetops.config_name"
TAG_CONFIG_HASH = "tweetops.config_hash"
TAG_FEATURES_TABLE = "tweetops.features_table"
TAG_FEATURES_VERSION = "tweetops.features_version"
LINEAGE_TAGS = (TAG_GIT_COMMIT, TAG_CONFIG_NAME, TAG_CONFIG_HASH, TAG_FEATURES_TABLE, TAG_FEATURES_VERSION)

# Metrics every training run logs on the fixed test split.
METRIC_TEST_MACRO_F1 = "test_macro_f1"
METRIC_TEST_ACCURACY = "test_accuracy"
