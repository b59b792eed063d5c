package main

import (
	"github.com/switchboard-dev/switchboard/blueprint"
	"github.com/switchboard-dev/switchboard/infra/stackconfig"
)

// awsTarget is the prod (and staging) stacks': VPC, EKS, ElastiCache, RDS,
// an ALB in front, CloudWatch alarms, all created by the stack.
func awsTarget(cfg stackconfig.Config) blueprint.AWS {
	a := cfg.AWS
	return blueprint.AWS{
		Region: a.Region, Profile: a.Profile,
		VPCCIDR: a.VPCCIDR, NATPerAZ: a.NATPerAZ,
		Cluster: blueprint.EKS{
			Version: a.EKSVersion, NodeInstanceType: a.NodeInstanceType, NodeMin: a.NodeMin, NodeMax: a.NodeMax,
			Addons: a.Addons, APIAllowedCIDRs: a.APIAllowedCIDRs,
		},
		LBControllerChart: a.LBControllerChart,
		CertificateARN:    a.CertificateARN, WAFACLARN: a.WAFACLARN,
		Stickiness:    a.Stickiness,
		AlarmTopicARN: a.AlarmTopicARN,
		Stores: blueprint.ManagedStores{
			RedisNodeType: a.RedisNodeType, RedisReplicas: a.RedisReplicas,
			DBInstanceClass: a.DBInstanceClass, DBStorageGB: a.DBStorageGB, DBMultiAZ: a.DBMultiAZ, DBBackupDays: a.DBBackupDays,
			DeletionProtection: a.DeletionProtect,
		},
	}
}
