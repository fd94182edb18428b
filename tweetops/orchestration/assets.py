"""Airflow Assets for the lakehouse tables and the model registry: how DAGs become data-aware.

A DAG that writes a table lists its asset in `outlets`; a DAG scheduled on that asset runs after
each update. Defined once here so producers and consumers always name the same asset.
"""
from airflow.sdk import Asset

BRONZE_TWEETS = Asset(name="bronze_tweets", uri="tweetops://lakehouse/bronze_tweets")
SILVER_TWEETS = Asset(name="silver_tweets", uri="tweetops://lakehouse/silver_tweets")
GOLD_FEATURES = Asset(name="gold_features", uri="tweetops://lakehouse/gold_features")
GOLD_PREDICTIONS = Asset(name="gold_predictions", uri="tweetops://lakehouse/gold_predictions")
# Updated when training registers a new challenger; the promotion DAG runs on it.
CHALLENGER_MODEL = Asset(name="challenger_model", uri="tweetops://registry/challenger")
# Updated when the drift DAG decides the model must be retrained; the training DAG runs on it.
RETRAIN_REQUEST = Asset(name="retrain_request", uri="tweetops://registry/retrain_request")
