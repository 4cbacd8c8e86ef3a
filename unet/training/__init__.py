"""Training with Keras: model builders, losses, the tf.data pipeline, the trainer and tuning."""
