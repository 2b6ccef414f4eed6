"""Review: Label Studio push and pull, and the labeling configuration reviewers see."""
