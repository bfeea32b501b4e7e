//! spark-sim
