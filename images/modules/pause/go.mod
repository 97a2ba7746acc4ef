module kubeup.dev/kubeup/images/modules/pause

go 1.26.0
