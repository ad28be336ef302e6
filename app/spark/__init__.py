"""The Spark job (optional extra `lossmon[spark]`): read prediction and label logs where
they live, dedup, join by prediction id and aggregate window statistics in Spark; the
driver only receives one row of sums per window and slice.

Only `app.spark.job` and the modules it imports need pyspark; `columns` and `finalise`
are plain Python so the CLI can validate its arguments without a JVM.
"""
