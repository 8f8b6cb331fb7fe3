//! Reconcilers. Each one is glue: fetch, call `poolnet_plan`, apply through `poolnet_arm` or
//! the shared writers, write status.
