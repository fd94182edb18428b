"""TweetOps: settings and the `tweetops` command line."""
