"""Lakehouse: the Delta tables, Spark on Delta, SQL and maintenance."""
