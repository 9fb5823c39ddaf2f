"""Full-ranking leave-one-out evaluation: metric functions, ranking in chunks, `transrec evaluate`."""
